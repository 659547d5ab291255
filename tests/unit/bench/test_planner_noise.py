"""The planner-noise benchmark's scoring on literal repetitions: the oracle predicts a
configuration by the mean of its *other* repetitions, the spread is (max - min) / mean, and a
predictor is scored against each repetition."""

from __future__ import annotations

import pytest

from testbed.bench.planner_noise import oracle, score, spread


def _row(time: float, energy: float) -> dict[str, float]:
    return {"time": time, "power": energy / time, "energy": energy, "edp": energy * time,
            "time_s": time, "step_s": time / 30, "power_w": energy / time, "energy_j": energy}


REPS = [{"a": _row(10, 100), "b": _row(30, 60)},
        {"a": _row(12, 100), "b": _row(30, 60)},
        {"a": _row(14, 100), "b": _row(30, 60)}]  # fmt: skip


def test_the_oracle_leaves_out_the_repetition_it_is_scored_on() -> None:
    assert oracle(REPS, 0)["a"]["time"] == pytest.approx(13.0)  # (12 + 14) / 2, not with 10
    assert oracle(REPS, 2)["a"]["time"] == pytest.approx(11.0)
    assert oracle(REPS, 1)["b"]["energy"] == pytest.approx(60.0)


def test_spread_is_the_range_over_the_mean() -> None:
    s = spread(REPS)
    assert s["a"]["time_s"] == pytest.approx(4 / 12)
    assert s["b"]["time_s"] == 0.0


def test_the_oracle_scores_its_errors_and_a_wrong_predictor_its_misses() -> None:
    got = score([oracle(REPS, r) for r in range(3)], REPS)
    assert got["decisions"] == 12 and got["best_pick"] == 1.0  # a is fastest, b least energy
    errs = sorted([abs(13 / 10 - 1), abs(12 / 12 - 1), abs(11 / 14 - 1)])
    assert got["step_error_worst"] == pytest.approx(errs[-1])  # 0.3: rep 0 against 13
    flipped = [{"a": _row(30, 40), "b": _row(5, 200)}] * 3  # predicts the opposite of the truth
    bad = score(flipped, REPS)
    assert bad["best_pick"] < 0.5 and bad["worst_regret"] > 0.5
