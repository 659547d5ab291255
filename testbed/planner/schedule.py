"""Total time under dynamic step assignment (the seed's eq. (4)): S steps, each worker taking the
next remaining one as soon as it finishes one.

Pure. Worker i's j-th step ends at first_i + j * step_i (first_i: the extra seconds of its first
step, i.e. tracing). The bulk is counted in closed form and only the last steps are simulated, so
S = 500,000 costs what S = 500 costs.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Schedule:
    """Steps each worker took, when each finished its last one, and the makespan."""

    steps: dict[str, int]
    busy_until: dict[str, float]
    makespan: float


def dynamic_schedule(
    step_s: Mapping[str, float], total: int, first_s: Mapping[str, float] | None = None
) -> Schedule:
    """Simulate S = `total` steps handed out one at a time to workers of these step times."""
    if total < 1:
        raise ValueError(f"total steps: got {total}; expected >= 1")
    bad = {w: s for w, s in step_s.items() if not (s > 0 and math.isfinite(s))}
    if not step_s or bad:
        raise ValueError(f"step times: got {bad or dict(step_s)}; expected positive seconds")
    first = {w: (first_s or {}).get(w, 0.0) for w in step_s}
    if total < len(step_s):  # fewer steps than workers: the first to finish take one each
        ends = sorted(step_s, key=lambda w: first[w] + step_s[w])[:total]
        busy = {w: first[w] + step_s[w] if w in ends else 0.0 for w in step_s}
        return Schedule({w: int(w in ends) for w in step_s}, busy, max(busy.values()))
    done = _fast_forward(step_s, first, total)
    return _finish(step_s, first, done, sum(done.values()) + len(step_s), total)


def _fast_forward(step_s: Mapping[str, float], first: Mapping[str, float], total: int) -> dict:
    """Steps each worker has finished by a time T0 at which fewer than S are claimed."""
    rate = sum(1 / s for s in step_s.values())
    t0 = (total - 2 * len(step_s)) / rate - max(first.values())
    if t0 <= 0:
        return dict.fromkeys(step_s, 0)
    return {w: max(0, math.floor((t0 - first[w]) / s)) for w, s in step_s.items()}


def _finish(
    step_s: Mapping[str, float],
    first: Mapping[str, float],
    done: dict[str, int],
    claimed: int,
    total: int,
) -> Schedule:
    """From `done` finished steps per worker (each with one more in flight), run to the end."""
    heap = [(first[w] + (done[w] + 1) * step_s[w], i, w) for i, w in enumerate(step_s)]
    heapq.heapify(heap)
    steps = {w: done[w] + 1 for w in step_s}
    busy = dict.fromkeys(step_s, 0.0)
    while heap:
        end, i, w = heapq.heappop(heap)
        busy[w] = end
        if claimed < total:
            claimed += 1
            steps[w] += 1
            heapq.heappush(heap, (end + step_s[w], i, w))
    return Schedule(steps, busy, max(busy.values()))


def closed_form_s(step_s: Mapping[str, float], total: int) -> float:
    """The seed's eq. (4) without its last-step effects: S / sum of the workers' rates."""
    return total / sum(1 / s for s in step_s.values())
