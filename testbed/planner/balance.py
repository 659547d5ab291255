"""Split balancing: contiguous stages that minimise the slowest stage's measured step time."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Balanced:
    """A split (index of the last unit of every stage but the last) and its stage times."""

    splits: tuple[int, ...]
    stage_times: tuple[float, ...]

    @property
    def bottleneck(self) -> float:
        return max(self.stage_times)


def _check(times: Sequence[float], k: int, boundary: Sequence[float]) -> None:
    n = len(times)
    if not 1 <= k <= n:
        raise ValueError(f"stages: got {k}, expected 1..{n} (one unit at least per stage)")
    if len(boundary) != max(n - 1, 0):
        raise ValueError(
            f"boundary costs: got {len(boundary)} values, expected {n - 1} (one per split point)"
        )
    for what, values in (("unit times", times), ("boundary costs", boundary)):
        bad = [v for v in values if not (math.isfinite(v) and v >= 0)]
        if bad:
            raise ValueError(f"{what}: got {bad[0]!r}, expected finite seconds >= 0")


def stage_times(
    times: Sequence[float], splits: Sequence[int], boundary: Sequence[float] | None = None
) -> tuple[float, ...]:
    """Each stage's time: its units' times plus the boundary cost of the split it ends at."""
    extra = list(boundary) if boundary is not None else [0.0] * (len(times) - 1)
    ends = [*splits, len(times) - 1]
    if ends != sorted(set(ends)) or ends[0] < 0:
        raise ValueError(
            f"splits: got {list(splits)}, expected increasing unit indices < {len(times) - 1}"
        )
    out, start = [], 0
    for end in ends:
        cost = sum(times[start : end + 1]) + (extra[end] if end < len(times) - 1 else 0.0)
        out.append(cost)
        start = end + 1
    return tuple(out)


def balance_split(
    times: Sequence[float], k: int, boundary: Sequence[float] | None = None
) -> Balanced:
    """Split n units into k contiguous stages minimising the largest stage time.

    times[u]: measured step time of unit u; boundary[u] (u < n-1): extra time of a stage that
    ends after unit u (e.g. its synthetic-gradient module). Ties go to the earliest splits.
    Dynamic programming over (units, stages): exact, O(k n^2).
    """
    extra = list(boundary) if boundary is not None else [0.0] * (len(times) - 1)
    _check(times, k, extra)
    n = len(times)
    prefix = [0.0]
    for t in times:
        prefix.append(prefix[-1] + t)

    def cost(i: int, j: int) -> float:  # units i..j as one stage
        return prefix[j + 1] - prefix[i] + (extra[j] if j < n - 1 else 0.0)

    # best[s][j]: (bottleneck, splits) for units 0..j in s stages
    best: list[dict[int, tuple[float, tuple[int, ...]]]] = [{} for _ in range(k + 1)]
    for j in range(n):
        best[1][j] = (cost(0, j), ())
    for s in range(2, k + 1):
        for j in range(s - 1, n):
            options = [
                (max(best[s - 1][i][0], cost(i + 1, j)), (*best[s - 1][i][1], i))
                for i in range(s - 2, j)
            ]
            best[s][j] = min(options, key=lambda o: o[0])
    _, splits = best[k][n - 1]
    return Balanced(splits, stage_times(times, splits, extra))


def bounds(stage_time: Sequence[float]) -> dict[str, float]:
    """Throughput bounds: one batch in flight 1/sum(t), a full pipeline 1/max(t), their ratio."""
    total, worst = sum(stage_time), max(stage_time)
    return {
        "sequential_it_s": 1.0 / total,
        "pipeline_it_s": 1.0 / worst,
        "speedup_bound": total / worst,
    }
