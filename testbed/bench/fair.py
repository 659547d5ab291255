"""Fair comparisons, as pure functions over measured runs: the strongest BP with the same
resources, one bound per target, accuracy at the same step count beside every throughput
ratio, and which ratios lie close enough to their target to be measured again (the repeats
themselves run through the caller's `again`).

A measured run is a dict with `it_s` and `final_test_accuracy`; repeated runs of a mode add
`it_s_runs` (every run's it/s, the first included). Repeats are taken in pairs (the method's
k-th run with the baseline's k-th run, alternating), so a ratio is the median of pair ratios.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from typing import Any

BP_MODES = ("bp-local", "bp-sync", "bp-pipeline")
NEAR = 0.15  # a ratio within 15% of its target is measured again
REPEATS = 3  # runs of the method and of its baseline when a ratio is near its target


def strongest_bp(measured: Mapping[str, Mapping[str, Any]]) -> str:
    """The BP mode with the highest it/s among those measured (the baseline of every ratio)."""
    present = [m for m in BP_MODES if m in measured]
    if not present:
        raise ValueError(f"no BP mode measured; expected one of {BP_MODES}, got {sorted(measured)}")
    return max(present, key=lambda m: runs_of(measured[m])[0])


def runs_of(row: Mapping[str, Any]) -> list[float]:
    """Every measured it/s of a mode, the first run first."""
    return list(row.get("it_s_runs") or [row["it_s"]])


def ratio_stats(values: Sequence[float]) -> dict[str, Any]:
    """Median, range and count of ratios measured more than once (or once)."""
    if not values:
        raise ValueError("ratio_stats: no values")
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "n": len(values)}  # fmt: skip


def paired_ratio(method: Sequence[float], baseline: Sequence[float]) -> dict[str, Any]:
    """method[k] / baseline[k] for every pair measured, summarised."""
    pairs = list(zip(method, baseline, strict=False))
    if not pairs or any(b <= 0 for _, b in pairs):
        raise ValueError(f"paired_ratio: need positive baselines, got {list(baseline)}")
    return ratio_stats([m / b for m, b in pairs])


def near_target(ratio: float, target: float, band: float = NEAR) -> bool:
    """Whether `ratio` lies within `band` (relative) of `target`: one run cannot settle it."""
    return abs(ratio / target - 1) <= band


def versus_bp(
    measured: Mapping[str, Mapping[str, Any]], method: str = "sg"
) -> dict[str, Any]:
    """The method against the strongest BP: it/s ratio, and both test accuracies after the same
    optimizer steps (accuracy gap in points, BP minus the method)."""
    bp = strongest_bp(measured)
    m, b = measured[method], measured[bp]
    return {
        "bp": bp,
        "it_s": paired_ratio(runs_of(m), runs_of(b)),
        "accuracy": {method: m["final_test_accuracy"], bp: b["final_test_accuracy"],
                     "gap_points": 100 * (b["final_test_accuracy"] - m["final_test_accuracy"])},
    }  # fmt: skip


def versus_bound(row: Mapping[str, Any], bound_it_s: float) -> dict[str, Any]:
    """A mode's it/s over a fixed bound (the profile bound), every run."""
    if bound_it_s <= 0:
        raise ValueError(f"versus_bound: bound must be > 0 it/s, got {bound_it_s}")
    return ratio_stats([x / bound_it_s for x in runs_of(row)])


def to_repeat(ratios: Mapping[str, float], targets: Mapping[str, float]) -> list[str]:
    """The names of the ratios that lie near their target (their cells are measured again)."""
    return [k for k, v in ratios.items() if k in targets and near_target(v, targets[k])]


def repeat_sg_near_targets(
    measured: Mapping[str, dict[str, Any]], bound_it_s: float, targets: Mapping[str, float],
    again: Callable[[dict[str, Any]], float],
) -> list[str]:
    """Where sg's ratio to the bound or to the strongest BP lies near its target, run sg and that
    BP REPEATS - 1 more times, alternating (`again(row)`: a mode's it/s, run once more as it
    ran; each adds to the row's `it_s_runs`); the names of the ratios repeated."""
    first = {"sg_vs_bound": measured["sg"]["it_s"] / bound_it_s,
             "sg_vs_bp": versus_bp(measured)["it_s"]["median"]}  # fmt: skip
    near = to_repeat(first, targets)
    if near:
        bp = strongest_bp(measured)
        for _ in range(REPEATS - 1):
            for mode in ("sg", bp):
                row = measured[mode]
                row.setdefault("it_s_runs", [row["it_s"]]).append(again(row))
    return near
