"""The planner benchmark's scoring on literal tables: the pick against the true best, regret,
second-best rate, rank correlation and prediction errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from testbed.bench.planner import FULL, by_model, decisions, errors, spearman, totals


def _row(time: float, energy: float, step: float = 0.1) -> dict[str, float]:
    return {"time": time, "power": energy / time, "energy": energy, "edp": energy * time,
            "time_s": time, "step_s": step, "power_w": energy / time, "energy_j": energy}


def test_a_right_pick_and_a_wrong_one_with_its_regret() -> None:
    measured = {"a": _row(10, 1000), "b": _row(12, 600), "c": _row(30, 500)}
    predicted = {"a": _row(11, 1100), "b": _row(10.5, 550), "c": _row(29, 520)}  # b looks fastest
    by = {d["prefer"]: d for d in decisions(predicted, measured)}
    assert by["time"]["pick"] == "b" and by["time"]["best"] == "a" and not by["time"]["correct"]
    assert by["time"]["top2"] and by["time"]["regret"] == pytest.approx(12 / 10 - 1)
    assert by["energy"]["correct"] and by["energy"]["regret"] == 0.0  # c: 520 < 550 predicted
    assert by["time"]["rank_correlation"] == pytest.approx(0.5)  # ranks (1,0,2) vs (0,1,2)
    e = errors(predicted, measured)
    assert e["energy_j"]["worst"] == pytest.approx(0.1)  # a: 100/1000; b: 50/600; c: 20/500
    assert e["energy_j"]["median"] == pytest.approx(50 / 600)
    t = totals([{"decisions": list(by.values()), "errors": e, "profiling_s": 1.0,
                 "estimation_s": 0.001, "estimation_5_devices_s": 0.002}])  # fmt: skip
    assert t["decisions"] == 4 and 0 < t["best_pick"] < 1


def test_spearman_extremes() -> None:
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == 1.0
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0


def test_cells_group_by_model_in_order_so_each_model_is_profiled_once() -> None:
    cells = [("a", "1gbit"), ("a", "10mbit"), ("b", "1gbit"), ("a", "100mbit")]
    assert by_model(cells) == {"a": ["1gbit", "10mbit", "100mbit"], "b": ["1gbit"]}
    assert list(by_model(FULL)) == ["alexnet-cifar", "tf-cifar10", "nin-cifar", "resnet20",
                                    "squeezenet-cifar"]  # fmt: skip
    assert all(len(rates) == 3 for rates in by_model(FULL).values())


def _profiling() -> Any:
    from testbed.planner.cluster import DeviceProfile, Links, PowerFit
    from testbed.planner.profiling import Profiling

    fast = DeviceProfile("a", 1.0, 0.2, 0.18, 0.01, 9.0, {"worker": 4.0, "ps": 5.0},
                         PowerFit(10.0, 60.0), trace_s=1.5)
    slow = DeviceProfile("b", 0.3, 0.7, 0.2, 0.01, 30.0, {"worker": 4.5, "ps": 5.5},
                         PowerFit(2.0, 8.0), trace_s=4.0)
    return Profiling({"a": fast, "b": slow}, Links({"a": 9.5e6, "b": 9.5e6}), 400_000,
                     390_000, 42.0)


def test_a_rescored_cell_is_estimated_again_and_scored_against_the_same_truth() -> None:
    import json

    from testbed.bench.planner import _metrics, rescored_cell
    from testbed.controller.planned import plan_record
    from testbed.planner.ranking import make_plan

    made = _profiling()
    record = json.loads(json.dumps(plan_record(make_plan(made.profiles, made.links,
                                                         made.workload(30), "time"), made)))
    truth = {r["config"]: _metrics(r) for r in record["configs"]}  # the estimate comes true
    truth["a"] = {**truth["a"], "step_s": truth["a"]["step_s"] * 1.25}
    stale = {c: {**row, "step_s": 1.0} for c, row in truth.items()}  # an old estimator's
    cell = {"steps": 30, "measured": truth, "predicted": stale, "decisions": [], "errors": {}}
    again = rescored_cell(cell, record)
    assert again["measured"] is truth and set(again["predicted"]) == set(truth) == {"a", "b", "a+b"}
    assert all(d["correct"] for d in again["decisions"])
    assert again["errors"]["step_s"]["worst"] == pytest.approx(0.2)  # a: 1 - 1/1.25
    assert again["errors"]["energy_j"]["worst"] == pytest.approx(0.0, abs=1e-12)


def test_rescoring_reads_the_profiling_each_cell_stored(tmp_path: Path) -> None:
    """No run directories: planner.json's cells alone are estimated again."""
    import json

    from testbed.bench.planner import _metrics, planner_rescore
    from testbed.controller.planned import profiling_record
    from testbed.planner.ranking import make_plan

    made = _profiling()
    plan = make_plan(made.profiles, made.links, made.workload(30), "time")
    truth = {e.config.label: _metrics(e.as_dict()) for e in plan.ranked}
    cell = {"model": "m", "rate": "1gbit", "steps": 30, "measured": truth, "predicted": {},
            "decisions": [], "errors": {}, "profiling_s": 42.0, "estimation_s": 0.001,
            "estimation_5_devices_s": 0.01, "profiling": json.loads(json.dumps(profiling_record(made)))}  # fmt: skip
    (tmp_path / "bench").mkdir()
    source = {"cells": [cell], "seed": {}, "provenance": {"commit": "abc"}}
    (tmp_path / "bench" / "planner.json").write_text(json.dumps(source))
    out = json.loads(planner_rescore(tmp_path).read_text())
    (again,) = out["cells"]
    assert again["errors"]["step_s"]["worst"] == pytest.approx(0.0, abs=1e-12)
    assert all(d["correct"] for d in again["decisions"]) and len(again["decisions"]) == 4
