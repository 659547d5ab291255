"""Checkpoint files: the full training state at one step, written atomically, the last K kept.

A checkpoint is one ``ckpt-<step>.npz`` (numpy's zip of named arrays, read back with
``allow_pickle=False``: no pickle, ever) holding the state's arrays (`testbed.training.state`)
and a ``__meta__`` entry: UTF-8 JSON with the step and whatever the writer adds (wall time,
training time, evaluations so far). It is written to a temporary file, synced, and renamed
into place, so a crash leaves either the previous checkpoint or the new one, never half of
one; older checkpoints beyond `keep` are removed afterwards.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

META = "__meta__"
_NAME = re.compile(r"^ckpt-(\d{9})\.npz$")
FORMAT = 1


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read; names the file and what is wrong."""


@dataclass(frozen=True, eq=False)
class Checkpoint:
    """The state at `step`: named arrays plus JSON metadata."""

    step: int
    arrays: dict[str, np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)


def path_for(directory: Path, step: int) -> Path:
    return directory / f"ckpt-{step:09d}.npz"


def steps(directory: Path) -> list[int]:
    """Steps of the complete checkpoints in `directory`, ascending."""
    if not directory.is_dir():
        return []
    found = (_NAME.match(p.name) for p in directory.iterdir())
    return sorted(int(m.group(1)) for m in found if m)


def save(directory: Path, ckpt: Checkpoint, keep: int) -> Path:
    """Write `ckpt` atomically (temporary file, fsync, rename), then keep only the last `keep`."""
    if keep < 1:
        raise ValueError(f"keep: got {keep}, expected at least 1")
    if META in ckpt.arrays:
        raise ValueError(f"array name {META!r} is reserved for the metadata")
    directory.mkdir(parents=True, exist_ok=True)
    meta = {**ckpt.meta, "step": ckpt.step, "format": FORMAT}
    blob = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    final = path_for(directory, ckpt.step)
    tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **ckpt.arrays, **{META: blob})
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    _sync_dir(directory)
    for old in steps(directory)[:-keep]:
        path_for(directory, old).unlink(missing_ok=True)
    return final


def _sync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load(path: Path) -> Checkpoint:
    """Read one checkpoint file (no pickle); CheckpointError if it is not one."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {name: z[name] for name in z.files}
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{path}: not a readable checkpoint: {err}") from None
    blob = arrays.pop(META, None)
    if blob is None:
        raise CheckpointError(f"{path}: no {META} entry; expected a file written by save()")
    meta = json.loads(blob.tobytes().decode())
    return Checkpoint(int(meta["step"]), arrays, meta)


def read_meta(path: Path) -> dict[str, Any]:
    """Only the metadata of a checkpoint file (the arrays stay unread)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return dict(json.loads(z[META].tobytes().decode()))
    except (OSError, ValueError, KeyError) as err:
        raise CheckpointError(f"{path}: not a readable checkpoint: {err}") from None


def latest(directory: Path) -> Checkpoint | None:
    """The newest checkpoint in `directory`, or None when there is none."""
    found = steps(directory)
    return load(path_for(directory, found[-1])) if found else None
