"""Choosing a configuration by preference: time, power, energy, EDP, or weights over them.

Pure. A single preference ranks by that metric (lower is better). Weights rank by the weighted
sum of each metric relative to its best value among the candidates, so metrics of different
units (seconds, watts, joules) can be mixed: {time: 1, energy: 1} favours a configuration 10%
slower but 30% more frugal over the fastest one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, TypeVar

from testbed.spec.planner import METRICS, check_preference

__all__ = ["METRICS", "Preference", "check_preference", "rank", "score"]

Preference = str | Mapping[str, float]


class Scored(Protocol):
    def metric(self, name: str) -> float: ...


T = TypeVar("T", bound=Scored)


def score(candidate: Scored, weights: Mapping[str, float], best: Mapping[str, float]) -> float:
    """Weighted sum of the candidate's metrics, each relative to the best candidate's."""
    return sum(w * candidate.metric(m) / best[m] for m, w in weights.items() if w > 0)


def rank(candidates: Sequence[T], prefer: Preference) -> list[T]:
    """Candidates best first for the preference (ties keep their order)."""
    if not candidates:
        return []
    weights = check_preference(prefer)
    best = {m: min(c.metric(m) for c in candidates) or 1e-12 for m in weights}
    return sorted(candidates, key=lambda c: score(c, weights, best))
