"""The planner benchmark's scoring on literal tables: the pick against the true best, regret,
second-best rate, rank correlation and prediction errors."""

from __future__ import annotations

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
