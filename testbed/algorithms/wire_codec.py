"""Wire codecs' math: lossy encodings of float32 stage tensors (fp16, int8, top-k) and back.

Pure numpy on arrays, no I/O. The serde module packs an `Encoded` into a message and checks
one that arrives; the in-process reference applies the same round trip between its stages
(`crossing`, `round_trip`), so a compressed distributed run can be compared with in-process
training under exactly the same quantisation.

int8 codes are round(x / scale) with scale = max|x| / 127, over the whole tensor (per-tensor)
or over each index of the last axis (per-channel: the channels of an NHWC activation, the
features of a dense one). Top-k keeps the ceil(topk * size) entries of largest magnitude of the
whole tensor (ties broken by position), sent as ascending flat positions; the rest decode to 0.
There is no error feedback: a stage message is about one batch, the next one is about others.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

Precision = Literal["fp32", "fp16", "int8"]
Granularity = Literal["per-tensor", "per-channel"]

CODE_DTYPES: dict[str, np.dtype] = {
    "fp32": np.dtype(np.float32), "fp16": np.dtype(np.float16), "int8": np.dtype(np.int8)
}
INT8_MAX = 127
FP16_MAX = float(np.finfo(np.float16).max)
INDEX_DTYPE = np.dtype("<u4")
_SCAN_COLUMNS = 4096  # per-channel statistics fold rows into this many columns for speed


@dataclass(frozen=True)
class Codec:
    """How one direction's tensors cross the wire: precision, int8 scale granularity, top-k."""

    precision: Precision = "fp32"
    scale: Granularity = "per-tensor"  # int8 only
    topk: float | None = None  # keep this fraction of the entries (largest magnitude); None: all

    def __post_init__(self) -> None:
        if self.precision not in CODE_DTYPES:
            raise ValueError(f"Codec.precision: got {self.precision!r}, expected one of "
                             f"{', '.join(CODE_DTYPES)}")
        if self.scale not in ("per-tensor", "per-channel"):
            raise ValueError(f"Codec.scale: got {self.scale!r}, expected per-tensor or per-channel")
        if self.topk is not None and not 0.0 < self.topk <= 1.0:
            raise ValueError(f"Codec.topk: got {self.topk!r}, expected a fraction in (0, 1]")

    @property
    def lossless(self) -> bool:
        """fp32 without top-k: the tensor crosses as it is."""
        return self.precision == "fp32" and self.topk is None

    @property
    def code_dtype(self) -> np.dtype:
        return CODE_DTYPES[self.precision]

    def kept(self, size: int) -> int:
        """Entries sent out of `size`: all, or ceil(topk * size) (at least 1 of a non-empty one)."""
        if self.topk is None or size == 0:
            return size
        return min(size, max(1, math.ceil(self.topk * size)))

    def n_scales(self, shape: tuple[int, ...]) -> int:
        """float32 scales an int8 tensor of `shape` carries (0 for fp16 and fp32 codes)."""
        if self.precision != "int8":
            return 0
        return channels(shape) if self.scale == "per-channel" else 1

    def describe(self) -> str:
        parts = [self.precision]
        if self.precision == "int8":
            parts.append(self.scale)
        if self.topk is not None:
            parts.append(f"top-{self.topk:g}")
        return " ".join(parts)


RAW = Codec()


def channels(shape: tuple[int, ...]) -> int:
    """Channels of a per-channel scale: the last axis of a tensor of rank >= 2, else 1."""
    return int(shape[-1]) if len(shape) >= 2 else 1


@dataclass(frozen=True, eq=False)
class Encoded:
    """A float32 tensor of `shape` as codes: dense in C order, or the kept entries (top-k)."""

    shape: tuple[int, ...]
    codes: np.ndarray  # 1-d, the codec's code dtype
    scale: np.ndarray | None = None  # int8: float32 (1,) or (channels,)
    indices: np.ndarray | None = None  # top-k: ascending uint32 flat positions of the codes

    @property
    def nbytes(self) -> int:
        """Bytes of codes, scales and positions (the payload the wire carries)."""
        extra = sum(0 if a is None else a.nbytes for a in (self.scale, self.indices))
        return int(self.codes.nbytes) + extra


def _amax_per_channel(x2: np.ndarray) -> np.ndarray:
    """max |x| of each column of a (rows, C) array, folded into wide rows (numpy reduces a
    narrow column axis slowly)."""
    rows, c = x2.shape
    fold = 1
    while rows % (fold * 2) == 0 and fold * 2 * c <= _SCAN_COLUMNS:
        fold *= 2
    wide = x2.reshape(rows // fold, fold * c)
    hi = wide.max(axis=0).reshape(fold, c).max(axis=0)
    lo = wide.min(axis=0).reshape(fold, c).min(axis=0)
    return np.maximum(hi, -lo).astype(np.float32)


def int8_scale(x: np.ndarray, granularity: Granularity) -> np.ndarray:
    """float32 scales max|x| / 127: one for the tensor, or one per channel (last axis)."""
    if x.size == 0:
        return np.zeros(channels(x.shape) if granularity == "per-channel" else 1, np.float32)
    if granularity == "per-channel" and x.ndim >= 2:
        amax = _amax_per_channel(x.reshape(-1, x.shape[-1]))
    else:
        amax = np.array([max(float(x.max()), -float(x.min()))], np.float32)
    return (amax / np.float32(INT8_MAX)).astype(np.float32)


def _divisor(scale: np.ndarray) -> np.ndarray:
    """Scales with 0 (an all-zero channel) replaced by 1, so its codes are 0."""
    return np.where(scale > 0, scale, np.float32(1)).astype(np.float32)


def _quantise(values: np.ndarray, scale: np.ndarray) -> np.ndarray:
    q = np.divide(values, scale, dtype=np.float32)
    np.rint(q, out=q)
    return q.astype(np.int8)


def _to_fp16(values: np.ndarray) -> np.ndarray:
    """Round to nearest fp16, saturating at +-65504 instead of overflowing to inf."""
    return np.clip(values, -FP16_MAX, FP16_MAX).astype(np.float16)


def _select(flat: np.ndarray, k: int) -> np.ndarray:
    """Ascending flat positions of the k entries of largest magnitude."""
    if k == flat.size:
        return np.arange(flat.size, dtype=INDEX_DTYPE)
    part = np.argpartition(np.abs(flat), flat.size - k, kind="introselect")[flat.size - k:]
    part.sort()
    return part.astype(INDEX_DTYPE)


def encode(x: np.ndarray, codec: Codec) -> Encoded:
    """Encode a float32 array with `codec`."""
    x = np.asarray(x, np.float32, order="C")  # ascontiguousarray would make a 0-d array 1-d
    shape = tuple(int(d) for d in x.shape)
    if x.size == 0:
        scale = np.zeros(codec.n_scales(shape), np.float32) if codec.precision == "int8" else None
        none = np.zeros(0, INDEX_DTYPE) if codec.topk is not None else None
        return Encoded(shape, np.zeros(0, codec.code_dtype), scale, none)
    flat = x.reshape(-1)
    indices = _select(flat, codec.kept(flat.size)) if codec.topk is not None else None
    scale = None
    if codec.precision == "int8":
        scale = int8_scale(x, codec.scale)
        divisor = _divisor(scale)
        if indices is not None:
            values = flat[indices]
            per_value = divisor[indices % len(divisor)] if len(divisor) > 1 else divisor
            codes = _quantise(values, per_value)
        else:
            codes = _quantise(x.reshape(-1, len(divisor)), divisor).reshape(-1)
    else:
        values = flat if indices is None else flat[indices]
        codes = _to_fp16(values) if codec.precision == "fp16" else values.copy()
    return Encoded(shape, codes, scale, indices)


def decode(enc: Encoded) -> np.ndarray:
    """The float32 tensor an Encoded stands for (inputs already checked: serde does that)."""
    values = enc.codes.astype(np.float32)
    if values.size and enc.scale is not None:
        n = len(enc.scale)
        if enc.indices is not None:
            values *= enc.scale[enc.indices % n] if n > 1 else enc.scale
        else:
            values = (values.reshape(-1, n) * enc.scale).reshape(-1)
    if enc.indices is None:
        return values.reshape(enc.shape)
    out = np.zeros(math.prod(enc.shape), np.float32)
    out[enc.indices] = values
    return out.reshape(enc.shape)


def round_trip(x: np.ndarray, codec: Codec) -> np.ndarray:
    """What the receiver of x gets: decode(encode(x)); x itself (as float32) when lossless."""
    if codec.lossless:
        return np.asarray(x, np.float32)
    return decode(encode(x, codec))


def tf_round_trip(x: Any, codec: Codec) -> Any:
    """round_trip on a TensorFlow tensor, inside or outside a tf.function."""
    if codec.lossless:
        return x
    import tensorflow as tf

    out = tf.numpy_function(lambda a: round_trip(a, codec), [x], tf.float32, stateful=False)
    out.set_shape(x.shape)
    return out


def crossing(activations: Codec, gradients: Codec) -> Callable[[Any], Any] | None:
    """The wire between two in-process stages: the forward value goes through the activations
    codec, the gradient coming back through the gradients codec (None when both are lossless).
    """
    if activations.lossless and gradients.lossless:
        return None
    import tensorflow as tf

    @tf.custom_gradient  # type: ignore[misc]
    def cross(h: Any) -> Any:
        def backward(dy: Any) -> Any:
            return tf_round_trip(dy, gradients)

        return tf_round_trip(h, activations), backward

    return cross


def wire_codecs(wire: Any) -> tuple[Codec, Codec]:
    """(activations codec, gradients codec) of a spec's `job.wire` block."""
    return Codec(wire.activations, wire.scale), Codec(wire.gradients, wire.scale, wire.topk)
