"""Small generated datasets with a known, learnable rule, for fast tests of training code."""

from __future__ import annotations

import numpy as np

from testbed.data import Dataset


def quadrants(n: int = 512, seed: int = 0) -> Dataset:
    """8x8 images whose label is the brightest of 4 quadrants (learnable by a tiny conv net);
    384 training and n - 384 test samples, labelled synthetic."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 0.5, size=(n, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 4, n)
    for i, q in enumerate(y):
        r, c = divmod(int(q), 2)
        x[i, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4] += 0.5
    return Dataset("synthetic", x[:384], y[:384], x[384:], y[384:], 10, (8, 8, 1), "test")
