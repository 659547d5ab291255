"""Server-side downsampling for charts: keep each bucket's min and max so spikes survive."""

from __future__ import annotations

import numpy as np


def minmax_indices(y: np.ndarray, max_points: int) -> np.ndarray:
    """Sorted indices into finite `y`: the first, the last and each bucket's min and max.

    All indices when len(y) <= max_points; otherwise at most max_points of them.
    """
    n = len(y)
    if max_points < 4:
        raise ValueError(f"max_points {max_points!r} is too small; expected at least 4")
    if n <= max_points:
        return np.arange(n)
    buckets = (max_points - 2) // 2
    size = -(-n // buckets)  # ceil
    rows = -(-n // size)
    pad = rows * size - n
    lo = np.concatenate([y, np.full(pad, np.inf)]).reshape(rows, size)
    hi = np.concatenate([y, np.full(pad, -np.inf)]).reshape(rows, size)
    base = np.arange(rows) * size
    keep = np.concatenate([[0, n - 1], base + lo.argmin(axis=1), base + hi.argmax(axis=1)])
    return np.unique(keep)


def downsample(x: np.ndarray, y: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """The finite (x, y) pairs, reduced to at most max_points by `minmax_indices`."""
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    idx = minmax_indices(y, max_points)
    return x[idx], y[idx]
