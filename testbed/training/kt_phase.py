"""What the KT runner's phases (teacher, student, fine-tune) share: loop adapter, accuracy."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from testbed.algorithms.bp import accuracy_count, forward
from testbed.data import Dataset
from testbed.spec.experiment import Spec


@dataclass
class Phase:
    """What `inprocess.train` needs of a session: spec, data, step and evaluator factories."""

    spec: Spec
    data: Dataset
    compile_step: Callable[[], Any]
    evaluator: Callable[[], Callable[[], float]]


def accuracy_fn(models: Sequence[keras.Model], x: np.ndarray, y: np.ndarray,
                batch: int = 1000) -> Callable[[], float]:
    """A function returning top-1 accuracy of the chained models on (x, y), re-read each call."""
    count = tf.function(lambda xb, yb: accuracy_count(forward(models, xb), yb))
    n = len(y)
    if n == 0:
        raise ValueError("accuracy: no evaluation samples")

    def evaluate() -> float:
        return sum(int(count(x[i : i + batch], y[i : i + batch])) for i in range(0, n, batch)) / n

    return evaluate


def accuracy(models: Sequence[keras.Model], x: np.ndarray, y: np.ndarray,
             batch: int = 1000) -> float:
    return accuracy_fn(models, x, y, batch)()


def eval_split(spec: Spec, data: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """The test samples every evaluation of the run uses (training.eval_samples or all)."""
    n = spec.training.eval_samples or len(data.y_test)
    return data.x_test[:n], data.y_test[:n]
