"""Mini-batch sampling: shuffled epochs over index permutations, reproducible from a seed.

A `BatchSampler`'s position (the random generator's state before the current epoch's
permutation, and how far into that epoch it is) can be saved with `state()` and put back with
`restore()`, so a resumed run draws exactly the batches the uninterrupted run would have.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np


class BatchSampler:
    """Endless index batches; each epoch is a fresh permutation (last partial batch dropped)."""

    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        if batch_size > n:
            raise ValueError(f"batch_size {batch_size} exceeds the {n} available samples")
        self.n, self.batch_size = n, batch_size
        self._rng = np.random.default_rng(seed)
        self._epoch_rng: dict[str, Any] = self._rng.bit_generator.state
        self._perm: np.ndarray | None = None
        self._pos = 0
        self.drawn = 0  # batches handed out since the run began (restored with the state)

    def __iter__(self) -> BatchSampler:
        return self

    def __next__(self) -> np.ndarray:
        if self._perm is None or self._pos + self.batch_size > self.n:
            self._epoch_rng = self._rng.bit_generator.state
            self._perm, self._pos = self._rng.permutation(self.n), 0
        idx = self._perm[self._pos : self._pos + self.batch_size]
        self._pos += self.batch_size
        self.drawn += 1
        return idx

    def state(self) -> dict[str, Any]:
        """Where the sampler stands: plain JSON (the generator state holds 128-bit integers)."""
        return {"n": self.n, "batch_size": self.batch_size, "epoch_rng": self._epoch_rng,
                "pos": self._pos if self._perm is not None else None, "drawn": self.drawn}  # fmt: skip

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from `state()`; refuses a state taken over other data or batch size."""
        if (state["n"], state["batch_size"]) != (self.n, self.batch_size):
            raise ValueError(
                f"sampler state is for {state['n']} samples in batches of {state['batch_size']}; "
                f"expected {self.n} in batches of {self.batch_size}"
            )
        self._rng.bit_generator.state = state["epoch_rng"]
        self._epoch_rng = state["epoch_rng"]
        self._perm, self._pos = None, 0
        if state["pos"] is not None:
            self._perm, self._pos = self._rng.permutation(self.n), int(state["pos"])
        self.drawn = int(state["drawn"])

    def encode(self) -> np.ndarray:
        """state() as a uint8 array (JSON bytes), to travel with the weights in a checkpoint."""
        return np.frombuffer(json.dumps(self.state()).encode(), dtype=np.uint8).copy()

    def decode_into(self, encoded: np.ndarray) -> None:
        """restore() from encode()'s array."""
        self.restore(json.loads(np.asarray(encoded, dtype=np.uint8).tobytes().decode()))


def batch_indices(n: int, batch_size: int, seed: int) -> Iterator[np.ndarray]:
    """Endless stream of index batches; each epoch is a fresh permutation (last partial batch dropped)."""
    return BatchSampler(n, batch_size, seed)
