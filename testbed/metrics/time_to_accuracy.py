"""Time to accuracy: the training seconds and steps at which a run first reaches each level.

One definition for every run, in process or distributed: an evaluation's `train_s` is the
training time from the first step until the weights it evaluated existed (the end of that step
in process; the moment the last worker snapshotted that version, distributed), with startup and
evaluation excluded. A level is reached at the first evaluation whose test accuracy is at or
above it. The run summary, the sweep tables, the dashboard and the notebook all read this.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class EvalPoint:
    """One evaluation: the step (weights version), training seconds to it, test accuracy."""

    step: int
    train_s: float
    test_acc: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class LevelReached:
    """When a run first reached `level` (step and train_s are None when it never did)."""

    level: float
    step: int | None
    train_s: float | None

    @property
    def reached(self) -> bool:
        return self.step is not None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def time_to_accuracy(points: Iterable[EvalPoint], levels: Sequence[float]) -> list[LevelReached]:
    """For each level, the first evaluation (in step order) at or above it."""
    ordered = sorted(points, key=lambda p: p.step)
    out = []
    for level in levels:
        first = next((p for p in ordered if p.test_acc >= level), None)
        out.append(LevelReached(level, first.step if first else None,
                                first.train_s if first else None))
    return out


def summary_block(points: Iterable[EvalPoint], levels: Sequence[float]) -> dict[str, Any]:
    """What summary.json holds: every evaluation and the levels reached."""
    pts = sorted(points, key=lambda p: p.step)
    return {
        "evaluations": [p.as_dict() for p in pts],
        "time_to_accuracy": [r.as_dict() for r in time_to_accuracy(pts, levels)],
    }


def level_key(level: float) -> str:
    """A level as it appears in table columns: 0.95 -> '0.95'."""
    return f"{level:g}"


def reached(summary: Mapping[str, Any], level: float) -> LevelReached:
    """When the run of this summary first reached `level`: its recorded entry, else found in
    its evaluations (a level the run did not list); never reached when it has none."""
    for entry in summary.get("time_to_accuracy") or []:
        if abs(float(entry["level"]) - level) < 1e-9:
            return LevelReached(float(entry["level"]), entry["step"], entry["train_s"])
    return time_to_accuracy(from_summary(summary), [level])[0]


def from_summary(summary: Mapping[str, Any]) -> list[EvalPoint]:
    """The evaluations a summary recorded."""
    return [EvalPoint(int(e["step"]), float(e["train_s"]), float(e["test_acc"]))
            for e in summary.get("evaluations") or []]
