"""The resplitter's decisions on literal costs: schedule changes, drift, threshold, interval."""

from __future__ import annotations

import pytest

from testbed.controller.resplit import Resplitter
from testbed.emulation.config import ScheduleEntry
from testbed.metrics.sink import Point
from testbed.planner.partition import Chain, Costs, Device
from testbed.spec.experiment import ResplitCfg


def _setup(on: str = "schedule", threshold: float = 0.1, interval: float = 0.001):
    chain = Chain(tuple(f"u{i}" for i in range(6)), (1.0,) * 6, (0.0,) * 5)
    costs = Costs(chain, [Device("a"), Device("b"), Device("c")])
    plan = costs.plan(["a", "b", "c"], [1, 3])  # 2 + 2 + 2 units
    events: list[tuple[str, dict]] = []
    r = Resplitter(ResplitCfg(on=on, threshold=threshold, min_interval_s=interval), costs, plan,
                   lambda name, **f: events.append((name, f)))
    sent: list = []
    return r, sent, events


def test_a_slowed_device_gets_fewer_units_and_the_split_is_sent_once():
    r, sent, events = _setup()
    r.on_schedule(ScheduleEntry(at_s=30, device="b", cpus=0.25))
    r.poll(sent.append)
    assert len(sent) == 1 and sent[0].epoch == 1
    # b at a quarter speed keeps one unit (4 s); a and c share the other five, none over 4 s
    ends = sent[0].stage_ends
    assert ends[1] - ends[0] == 1 and ends[0] + 1 <= 4 and 5 - ends[1] <= 4
    assert events[-1][0] == "resplit" and events[-1][1]["gain"] > 0.1
    assert events[-1][1]["new_bound_it_s"] == pytest.approx(0.25)  # from 1/8 before
    assert events[-1][1]["current_bound_it_s"] == pytest.approx(0.125)
    r.poll(sent.append)  # nothing new asked for
    assert len(sent) == 1
    assert r.summary()["count"] == 1


def test_no_resplit_when_the_gain_is_under_the_threshold():
    r, sent, events = _setup(threshold=0.5)
    r.on_schedule(ScheduleEntry(at_s=30, device="b", cpus=0.8))  # 2.5 s vs 2 s: 25% at most
    r.poll(sent.append)
    assert sent == [] and events[-1][0] == "resplit_skipped"


def test_a_link_change_enters_the_cost_model():
    r, sent, _ = _setup()
    r.on_schedule(ScheduleEntry(at_s=1, device="c", rate="10mbit"))
    assert r.devices["c"].link_bps == 10e6


def test_min_interval_holds_a_second_request():
    r, sent, _ = _setup(interval=3600)
    r.on_schedule(ScheduleEntry(at_s=1, device="b", cpus=0.25))
    r.poll(sent.append)
    r.on_schedule(ScheduleEntry(at_s=2, device="b", cpus=1.0))
    r.poll(sent.append)
    assert len(sent) == 1


def _point(worker: str, step: int, compute_s: float) -> Point:
    return Point("worker", {"step": step, "compute_s": compute_s}, {"worker": worker}, 0)


def test_drift_re_estimates_the_speed_from_measured_compute():
    r, sent, _ = _setup(on="drift", threshold=0.2)
    # predicted 2 s per step for b; measured 2.2 (its bias, learnt in the first window) ...
    for step in (0, 20):
        r.observe(_point("b", step, 2.2 * step))
    # ... then 4x slower for two windows: speed 1 -> 0.25
    compute = 2.2 * 20
    for step in (40, 60):
        compute += 20 * 8.8
        r.observe(_point("b", step, compute))
    assert r.devices["b"].speed == pytest.approx(0.25)
    r.poll(sent.append)
    assert len(sent) == 1


def test_the_resumed_pipeline_is_timed_from_the_workers_resplit_points():
    r, sent, _ = _setup()
    r.on_schedule(ScheduleEntry(at_s=30, device="b", cpus=0.25))
    r.poll(sent.append)
    at = r.history[0]["sent_at"]
    for w, dt in (("a", 1.0), ("b", 3.5), ("c", 2.0)):
        r.observe(Point("resplit", {"epoch": 1}, {"worker": w}, int((at + dt) * 1e9)))
    assert r.history[0]["workers_done"] == 3
    assert r.history[0]["pause_s"] == pytest.approx(3.5, abs=1e-3)


def test_resplit_config_reads_yaml_on_as_the_field():
    import yaml

    cfg = ResplitCfg.model_validate(yaml.safe_load("{on: drift, threshold: 0.2}"))
    assert cfg.on == "drift"
