"""Mini-batch sampling: shuffled epochs over index permutations, reproducible from a seed."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


def batch_indices(n: int, batch_size: int, seed: int) -> Iterator[np.ndarray]:
    """Endless stream of index batches; each epoch is a fresh permutation (last partial batch dropped)."""
    if batch_size > n:
        raise ValueError(f"batch_size {batch_size} exceeds the {n} available samples")
    rng = np.random.default_rng(seed)
    while True:
        perm = rng.permutation(n)
        for start in range(0, n - batch_size + 1, batch_size):
            yield perm[start : start + batch_size]
