"""A generated CIFAR-shaped data set (32x32x3, 10 classes) for timing, power and planning only.

CIFAR-10 cannot be had on machines without the internet (no registry ships it); the seed's
models still need inputs of its shape to be timed. The images are seeded uniform noise with
uniform labels: nothing to learn, so every output made on it says `synthetic` and reports no
accuracy (evaluations return NaN; run summaries carry `data: synthetic`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from testbed.data.dataset import RawSplits
from testbed.data.spec import DatasetSpec, Source

SHAPE = (32, 32, 3)
CLASSES = 10
TRAIN, TEST = 4096, 256  # enough distinct batches at batch 32; small in every worker's memory
SEED = 20_191_204


def generate(root: Path) -> tuple[RawSplits, str]:
    """The same arrays on every call and every machine (numpy's PCG64 from a fixed seed)."""
    rng = np.random.default_rng(SEED)
    x = rng.integers(0, 256, (TRAIN + TEST, *SHAPE), dtype=np.uint8)
    y = rng.integers(0, CLASSES, TRAIN + TEST).astype(np.int64)
    splits = RawSplits(x[:TRAIN], y[:TRAIN], x[TRAIN:], y[TRAIN:])
    return splits, f"synthetic: seeded noise shaped like CIFAR-10 (seed {SEED}), no real images"


SPEC = DatasetSpec(
    name="cifar10-synthetic",
    num_classes=CLASSES,
    input_shape=SHAPE,
    sources=(Source("generated", generate),),
    synthetic=True,
)
