"""Fast tier for emulated runs: cluster/placement checks, backends, link bytes, schedule."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from testbed.controller.backends import BACKENDS, BackendError, BackendRegistry
from testbed.controller.link_schedule import LinkSchedule
from testbed.controller.link_traffic import HOST, bound_it_s, link_traffic
from testbed.controller.plan import device_of, plan_workers
from testbed.emulation.config import ClusterSpec, ScheduleEntry
from testbed.spec.errors import SpecError
from testbed.spec.load import load_spec, parse_spec


def _raw(mode: str = "sg", **over: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "name": "edge",
        "model": {"name": "four-layer", "split_after": ["conv1"]},
        "algorithm": {"name": "sg" if mode == "sg" else "bp"},
        "training": {"iterations": 10},
        "job": {"mode": mode},
        "cluster": {
            "devices": [{"name": "a", "cpus": 0.4}, {"name": "b", "cpus": 0.4}],
            "links": [{"device": "a", "rate": "10mbit"}],
        },
    }
    return {**raw, **over}


def test_cluster_is_typed_and_default_placement_puts_stage_i_on_device_i() -> None:
    spec = parse_spec(_raw())
    assert isinstance(spec.cluster, ClusterSpec)
    plans = plan_workers(spec)
    assert [(p.name, device_of(spec, p)) for p in plans] == [("ps", None), ("a", "a"), ("b", "b")]


def test_bp_local_runs_on_the_first_stage_device_unless_placed() -> None:
    spec = parse_spec(_raw("bp-local"))
    assert {p.name: device_of(spec, p) for p in plan_workers(spec)} == {"ps": None, "local": "a"}
    placed = parse_spec(_raw("bp-local", placement={"local": "b", "ps": "a"}))
    assert {p.name: device_of(placed, p) for p in plan_workers(placed)} == {"ps": "a", "local": "b"}


@pytest.mark.parametrize(
    ("placement", "fragment"),
    [
        ({"0": "a", "1": "nope"}, "'1' -> 'nope' names no device of the cluster; known devices: a"),
        ({"stage0": "a"}, "key 'stage0' is not understood"),
    ],
)
def test_bad_placement_is_refused_with_the_value_and_expected_form(
    placement: dict[str, str], fragment: str
) -> None:
    with pytest.raises(SpecError, match="placement") as info:
        parse_spec(_raw(placement=placement), "x.yaml")
    assert fragment in str(info.value)


def test_bad_cluster_names_the_field() -> None:
    raw = _raw()
    raw["cluster"] = {**raw["cluster"], "links": [{"device": "zz", "rate": "1gbit"}]}
    with pytest.raises(SpecError, match=r"x.yaml: cluster.*unknown device 'zz'"):
        parse_spec(raw, "x.yaml")


def test_edge_experiments_load() -> None:
    for name in ("four-layer-sg-edge", "four-layer-bp-pipeline-edge"):
        spec = load_spec(name, "smoke")
        assert spec.cluster is not None and len(spec.cluster.devices) == 4
        assert all(d.cpus == 0.4 and d.memory == "1g" for d in spec.cluster.devices)


def test_backend_registry_lists_known_keys() -> None:
    assert BACKENDS.get("local").__name__ == "LocalBackend"
    with pytest.raises(BackendError, match="unknown backend 'k8s'; known backends: docker, local"):
        BACKENDS.get("k8s")
    broken = BackendRegistry({"docker": ("testbed.emulation.no_such_module", "X")})
    with pytest.raises(BackendError, match="backend 'docker' cannot be imported .*known backends"):
        broken.get("docker")


def test_link_traffic_puts_bytes_next_to_each_link_rate() -> None:
    workers = {
        "a": {"peers": {"sent:downstream": {"messages": 10, "wire_bytes": 1000, "raw_bytes": 900},
                        "sent:ps": {"messages": 1, "wire_bytes": 50, "raw_bytes": 40}}},
        "b": {"peers": {"sent:upstream": {"messages": 10, "wire_bytes": 500, "raw_bytes": 450}}},
    }  # fmt: skip
    rates = {("a", "b"): 8000, ("b", "a"): 8000, ("a", HOST): 16000}
    trainers = [("a", "a"), ("b", "b")]
    rows = link_traffic(trainers, ("ps", HOST), workers, 10, lambda s, d: rates.get((s, d)))
    by = {(r["src"], r["dst"]): r for r in rows}
    assert by[("a", "b")]["wire_bytes_per_step"] == 100 and by[("a", "b")]["link_bound_it_s"] == 10
    assert by[("b", "a")]["link_bound_it_s"] == 20
    assert by[("a", HOST)]["configured_bps"] == 16000
    assert bound_it_s(rows) == 10


def test_schedule_applies_entries_in_order_and_reports_failures() -> None:
    entries = [
        ScheduleEntry(at_s=0.05, device="a", rate="1mbit"),
        ScheduleEntry(at_s=0.0, device="a", rate="2mbit"),
    ]
    seen: list[str | None] = []
    events: list[tuple[str, dict[str, Any]]] = []
    done = threading.Event()

    def apply(entry: ScheduleEntry) -> Any:
        seen.append(entry.rate)
        if len(seen) == 2:
            done.set()
            raise RuntimeError("link gone")
        return entry.link_settings()

    with LinkSchedule(entries, apply, lambda name, **kw: events.append((name, kw))) as schedule:
        schedule.start()
        assert done.wait(5.0)
    assert seen == ["2mbit", "1mbit"]
    assert [e[0] for e in events] == ["link_changed", "link_change_failed"]
    assert "link gone" in events[1][1]["error"]


def test_schedule_sends_worker_faults_to_the_controller_and_device_faults_to_the_cluster() -> None:
    entries = [ScheduleEntry(at_s=0.0, worker="ps", fault="kill"),
               ScheduleEntry(at_s=0.01, device="a", fault="pause")]
    events: list[tuple[str, dict[str, Any]]] = []
    done = threading.Event()

    def apply(entry: ScheduleEntry) -> Any:
        done.set()
        return {"device": entry.device, "fault": entry.fault, "pids": [7]}

    def on_worker(entry: ScheduleEntry) -> Any:
        return {"worker": entry.worker, "pids": [3]}

    with LinkSchedule(entries, apply, lambda name, **kw: events.append((name, kw)), on_worker) as s:
        s.start()
        assert done.wait(5.0)
    assert [(e, kw["fault"], kw["pids"]) for e, kw in events] == [
        ("fault_injected", "kill", [3]), ("fault_injected", "pause", [7])]
    assert events[0][1]["fault"] == "kill" and events[0][1]["worker"] == "ps"
    assert [a["fault"] for a in s.applied] == ["kill", "pause"]
