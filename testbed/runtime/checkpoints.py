"""Distributed checkpoints at the parameter server: stage states assembled per version, written
once complete, and the loaded one served to resumed or restarted workers.

Each stage worker pushes its stages' full state at every multiple of
`training.checkpoint_every` (`StageIO.maybe_push`). The server keeps the states of a version
until every stage's is in, then writes one checkpoint file in the same format as an
in-process run (`testbed.training.checkpoint`): the run can be resumed from it, and the
newest K are kept. Versions older than the newest written one are dropped unfinished (a
stage that skipped them will not send them any more).

Beside them, the server's weight snapshot (`save_checkpoint` / `load_checkpoint`): the newest
evaluated weights of every stage, no optimizer state, read back by the KT run for its student.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from testbed.training import checkpoint
from testbed.training.checkpoint import Checkpoint
from testbed.training.state import stage_of


class CheckpointStore:
    """States of `stages` stages by version; `meta(version)` adds the run's clock to each file."""

    def __init__(self, directory: Path, stages: int, keep: int) -> None:
        self.directory, self.stages, self.keep = directory, stages, keep
        self.meta: Callable[[int], dict[str, Any]] = lambda version: {}
        self._lock = threading.Lock()
        self._pending: dict[int, dict[int, dict[str, np.ndarray]]] = {}
        self.written: list[int] = []
        self.loaded: Checkpoint | None = None

    def add(self, stage_id: int, version: int, arrays: dict[str, np.ndarray]) -> Path | None:
        """Take one stage's state at `version`; write the checkpoint when it completes one."""
        with self._lock:
            if self.written and version <= self.written[-1]:
                return None  # a late copy of a version already written (or skipped)
            have = self._pending.setdefault(version, {})
            have[stage_id] = arrays
            if len(have) < self.stages:
                return None
            for v in [v for v in self._pending if v <= version]:
                del self._pending[v]
            self.written.append(version)
        merged = {name: a for shard in have.values() for name, a in shard.items()}
        return checkpoint.save(self.directory, Checkpoint(version, merged, self.meta(version)),
                               self.keep)  # fmt: skip

    def load(self, step: int) -> Checkpoint:
        """Read the checkpoint at `step` (the one a resumed run starts from) to serve it."""
        self.loaded = checkpoint.load(checkpoint.path_for(self.directory, step))
        self.written = [step]
        return self.loaded

    def shard(self, stage_id: int) -> dict[str, np.ndarray]:
        """The loaded checkpoint's arrays of one stage ({} when nothing is loaded)."""
        if self.loaded is None:
            return {}
        return {n: a for n, a in self.loaded.arrays.items() if stage_of(n) == stage_id}


def save_checkpoint(directory: Path, version: int, stages: list[dict[str, np.ndarray]]) -> None:
    """stage<i>.npz (arrays in weight order, no pickle) plus checkpoint.json with the version."""
    directory.mkdir(parents=True, exist_ok=True)
    for i, tensors in enumerate(stages):
        tmp = directory / f"stage{i}.tmp.npz"
        np.savez(tmp, *tensors.values())
        os.replace(tmp, directory / f"stage{i}.npz")
    names = [list(t) for t in stages]
    (directory / "checkpoint.json").write_text(json.dumps({"version": version, "names": names}))


def load_checkpoint(directory: Path) -> tuple[int, list[list[np.ndarray]]]:
    """(version, per-stage arrays in weight order) from save_checkpoint's files."""
    meta = json.loads((directory / "checkpoint.json").read_text())
    stages = []
    for i, names in enumerate(meta["names"]):
        with np.load(directory / f"stage{i}.npz", allow_pickle=False) as z:
            stages.append([z[f"arr_{k}"] for k in range(len(names))])
    return int(meta["version"]), stages
