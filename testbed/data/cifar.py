"""CIFAR-10/100 from the official python-pickle layout, local or downloaded via Keras."""

from __future__ import annotations

import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from testbed.data.dataset import RawSplits
from testbed.data.network import keras_get_file
from testbed.data.safe_pickle import safe_loads
from testbed.data.spec import DatasetSpec, Source, SourceError

_SIDE = 32
_ROW = 3 * _SIDE * _SIDE


@dataclass(frozen=True)
class CifarLayout:
    """Where one CIFAR variant's batches live and how its archive is published."""

    name: str
    dirname: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    label_key: bytes
    num_classes: int
    archive: str
    origin: str
    sha256: str


CIFAR10 = CifarLayout(
    name="cifar10",
    dirname="cifar-10-batches-py",
    train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
    test_files=("test_batch",),
    label_key=b"labels",
    num_classes=10,
    archive="cifar-10-python.tar.gz",
    origin="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    sha256="6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
)
CIFAR100 = CifarLayout(
    name="cifar100",
    dirname="cifar-100-python",
    train_files=("train",),
    test_files=("test",),
    label_key=b"fine_labels",
    num_classes=100,
    archive="cifar-100-python.tar.gz",
    origin="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
    sha256="85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7",
)


def read_layout(directory: Path, layout: CifarLayout) -> RawSplits:
    """Read train and test batches from an extracted official CIFAR directory."""
    x_train, y_train = _read_batches(directory, layout.train_files, layout.label_key)
    x_test, y_test = _read_batches(directory, layout.test_files, layout.label_key)
    return RawSplits(x_train, y_train, x_test, y_test)


def _read_batches(
    directory: Path, files: tuple[str, ...], label_key: bytes
) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate several batch files into uint8 NHWC images and int64 labels."""
    pairs = [_read_batch(directory / name, label_key) for name in files]
    return np.concatenate([x for x, _ in pairs]), np.concatenate([y for _, y in pairs])


def _read_batch(path: Path, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    """One batch: {b'data': uint8 (N, 3072) CHW rows, label_key: N ints}."""
    if not path.is_file():
        raise SourceError(f"missing CIFAR batch file {path}")
    batch: Any = safe_loads(path.read_bytes(), encoding="bytes")
    if not isinstance(batch, dict) or b"data" not in batch or label_key not in batch:
        raise SourceError(
            f"{path} is not a CIFAR batch: expected a dict with b'data', {label_key!r}"
        )
    data = np.asarray(batch[b"data"])
    labels = np.asarray(batch[label_key], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _ROW:
        raise SourceError(
            f"{path} b'data' is {data.dtype} {data.shape}, expected uint8 (N, {_ROW})"
        )
    if labels.shape != (data.shape[0],):
        raise SourceError(f"{path} has {labels.shape} labels for {data.shape[0]} images")
    images = data.reshape(-1, 3, _SIDE, _SIDE).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def local_source(layout: CifarLayout) -> Source:
    """Source reading ``<data dir>/<official dirname>`` (e.g. ``cifar-10-batches-py``)."""

    def fetch(root: Path) -> tuple[RawSplits, str]:
        directory = root / layout.dirname
        if not directory.is_dir():
            raise SourceError(f"no directory {directory}")
        return read_layout(directory, layout), f"local files {directory}"

    return Source(f"local {layout.dirname}", fetch)


def download_source(layout: CifarLayout) -> Source:
    """Source downloading the official archive with Keras and extracting it into the data dir."""

    def fetch(root: Path) -> tuple[RawSplits, str]:
        archive = keras_get_file(layout.archive, layout.origin, layout.sha256, root)
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(root, filter="data")
        return read_layout(root / layout.dirname, layout), f"keras download {layout.origin}"

    return Source(f"download {layout.archive}", fetch)


def make_spec(layout: CifarLayout) -> DatasetSpec:
    """Registry entry for one CIFAR variant: local files first, then the download."""
    return DatasetSpec(
        name=layout.name,
        num_classes=layout.num_classes,
        input_shape=(_SIDE, _SIDE, 3),
        sources=(local_source(layout), download_source(layout)),
    )


CIFAR10_SPEC = make_spec(CIFAR10)
CIFAR100_SPEC = make_spec(CIFAR100)
