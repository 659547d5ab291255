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


def random_images(n: int = 64, shape: tuple[int, ...] = (28, 28, 1), classes: int = 10,
                  seed: int = 0) -> Dataset:
    """Uniform noise images with random labels in MNIST's shape (train and test the same), for
    tests that need a dataset's shape and order but not its content; labelled fake."""
    rng = np.random.default_rng(seed)
    x = rng.random((n, *shape), np.float32)
    y = rng.integers(0, classes, n).astype(np.int64)
    return Dataset("mnist", x, y, x, y, classes, shape, "fake")
