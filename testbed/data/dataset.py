"""The in-memory dataset value handed to models and workers, plus data errors."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class DatasetUnavailableError(RuntimeError):
    """No source (cache, download, bundled wheel, local files) could provide a dataset."""


class UnknownDatasetError(ValueError, KeyError):
    """A dataset key that is not registered; catchable as ValueError or KeyError."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class RawSplits:
    """Train/test images as uint8 NHWC and labels as int64, before scaling."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


@dataclass(frozen=True, eq=False)
class Dataset:
    """Images float32 NHWC in [0, 1], labels int64 (N,), and where they came from."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    input_shape: tuple[int, int, int]
    source: str
    synthetic: bool = False  # generated (no real images): evaluations report no accuracy


def check_raw(
    name: str, raw: RawSplits, input_shape: tuple[int, int, int], num_classes: int
) -> None:
    """Raise ValueError naming the offending array unless ``raw`` has the expected form."""
    for split in ("train", "test"):
        x = getattr(raw, f"x_{split}")
        y = getattr(raw, f"y_{split}")
        if x.dtype != np.uint8 or x.ndim != 4 or tuple(x.shape[1:]) != input_shape:
            raise ValueError(
                f"{name} x_{split}: got {x.dtype} {x.shape}, expected uint8 (N, *{input_shape})"
            )
        if y.dtype != np.int64 or y.shape != (x.shape[0],):
            raise ValueError(
                f"{name} y_{split}: got {y.dtype} {y.shape}, expected int64 ({x.shape[0]},)"
            )
        if y.size and (y.min() < 0 or y.max() >= num_classes):
            raise ValueError(
                f"{name} y_{split}: labels span [{y.min()}, {y.max()}], "
                f"expected [0, {num_classes - 1}]"
            )


def to_dataset(
    name: str,
    raw: RawSplits,
    num_classes: int,
    input_shape: tuple[int, int, int],
    source: str,
    synthetic: bool = False,
) -> Dataset:
    """Validate uint8 splits and scale them to the float32 ``Dataset`` form."""
    check_raw(name, raw, input_shape, num_classes)
    return Dataset(
        name=name,
        x_train=_scale(raw.x_train),
        y_train=raw.y_train,
        x_test=_scale(raw.x_test),
        y_test=raw.y_test,
        num_classes=num_classes,
        input_shape=input_shape,
        source=source,
        synthetic=synthetic,
    )


def _scale(x: np.ndarray) -> np.ndarray:
    """uint8 pixels -> float32 in [0, 1] (x / 255, as Keras users expect)."""
    out = x.astype(np.float32)
    out /= np.float32(255.0)
    return out
