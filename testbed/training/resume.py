"""Save an in-process run's state as a checkpoint, and continue a run from its latest one.

What a run needs to continue exactly where it stood: every stage's state (`state.capture`),
the data sampler's position, and the run's own clock (step, wall time, training time, the
evaluations so far, so the accuracy curve and the summary continue across resumptions).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testbed.data.batches import BatchSampler
from testbed.metrics.time_to_accuracy import EvalPoint
from testbed.training import checkpoint, state
from testbed.training.checkpoint import Checkpoint
from testbed.training.state import SAMPLER_KEY, StageParts

CHECKPOINTS_DIR = "checkpoints"  # under the run directory


@dataclass
class Position:
    """Where a run stands: completed steps, seconds of wall and training time, evaluations."""

    step: int = 0
    wall_s: float = 0.0
    train_time_s: float = 0.0
    evals: list[EvalPoint] = field(default_factory=list)

    def meta(self) -> dict[str, Any]:
        return {"wall_s": self.wall_s, "train_time_s": self.train_time_s,
                "evaluations": [e.as_dict() for e in self.evals]}  # fmt: skip

    @classmethod
    def from_checkpoint(cls, ckpt: Checkpoint) -> Position:
        m = ckpt.meta
        evals = [EvalPoint(int(e["step"]), float(e["train_s"]), float(e["test_acc"]))
                 for e in m.get("evaluations", []) if int(e["step"]) <= ckpt.step]  # fmt: skip
        return cls(ckpt.step, float(m.get("wall_s", 0.0)), float(m.get("train_time_s", 0.0)), evals)


def save_state(
    directory: Path, parts: dict[int, StageParts], sampler: BatchSampler, pos: Position, keep: int
) -> Path:
    """Checkpoint the stages, the sampler and the clock at pos.step."""
    arrays = {**state.capture(parts), SAMPLER_KEY: sampler.encode()}
    return checkpoint.save(directory, Checkpoint(pos.step, arrays, pos.meta()), keep)


def restore_state(
    directory: Path, parts: dict[int, StageParts], sampler: BatchSampler
) -> Position:
    """Load the latest checkpoint into the stages and sampler; Position() when there is none."""
    ckpt = checkpoint.latest(directory)
    if ckpt is None:
        return Position()
    state.restore(parts, ckpt.arrays)
    sampler.decode_into(ckpt.arrays[SAMPLER_KEY])
    return Position.from_checkpoint(ckpt)

