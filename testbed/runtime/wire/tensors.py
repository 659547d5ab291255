"""Tensors to and from protobuf: the allowed dtypes, the TensorSpec a receiver expects, and the
checks of dtype, shape and size on every tensor that arrives; the only module touching tensor bytes
(the stage messages build on it in serde, the parameter server's in serde_ps).

Stage tensors may cross compressed (job.wire): a Tensor then carries its codes and a
Compression (code dtype, int8 scales, top-k positions), built and checked here with the math
of testbed.algorithms.wire_codec; the receiver's TensorSpec names the codec it expects.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from google.protobuf.message import Message

from testbed.algorithms import wire_codec
from testbed.algorithms.wire_codec import RAW, Codec, Encoded
from testbed.runtime.wire.proto import common_pb2

DEFAULT_MAX_TENSOR_BYTES = 64 * 1024 * 1024


def _allowed_dtypes() -> dict[str, np.dtype]:
    names = ["float32", "float16", "int32", "int64", "uint8", "bool"]
    dtypes = {name: np.dtype(name) for name in names}
    try:
        import ml_dtypes  # ships with TensorFlow

        dtypes["bfloat16"] = np.dtype(ml_dtypes.bfloat16)
    except ImportError:  # pragma: no cover - depends on the environment
        pass
    return dtypes


ALLOWED_DTYPES: Mapping[str, np.dtype] = _allowed_dtypes()
_DTYPE_NAMES = ", ".join(sorted(ALLOWED_DTYPES))


class MessageValidationError(ValueError):
    """A received message is malformed; servers answer it with INVALID_ARGUMENT."""


class TensorValidationError(MessageValidationError):
    """A tensor's dtype, shape or byte length does not match what was declared or expected."""


@dataclass(frozen=True)
class TensorSpec:
    """Expected dtype and shape of a tensor; None in shape matches any size (e.g. the batch).

    codec: how a float32 tensor is expected to cross the wire (job.wire); RAW: uncompressed.
    """

    dtype: str
    shape: tuple[int | None, ...]
    codec: Codec = RAW

    def __post_init__(self) -> None:
        if self.dtype not in ALLOWED_DTYPES:
            raise ValueError(
                f"TensorSpec.dtype: got {self.dtype!r}, expected one of {_DTYPE_NAMES}"
            )
        for dim in self.shape:
            if dim is not None and (not isinstance(dim, int) or dim < 0):
                raise ValueError(
                    f"TensorSpec.shape: got {self.shape!r}, expected non-negative ints or None"
                )


# --- encoding and checks -------------------------------------------------------------------------


def _dtype_named(name: str, field: str) -> np.dtype:
    dtype = ALLOWED_DTYPES.get(name)
    if dtype is None:
        raise TensorValidationError(f"{field}.dtype: got {name!r}, expected one of {_DTYPE_NAMES}")
    return dtype


def _wire_array(arr: np.ndarray, field: str) -> tuple[np.dtype, np.ndarray]:
    """The array as sent: its allowed dtype, little-endian and C-ordered."""
    arr = np.asarray(arr)
    dtype = _dtype_named(arr.dtype.name, field)
    little = dtype.newbyteorder("<")
    return dtype, np.asarray(arr, dtype=little, order="C")  # ascontiguousarray makes 0-d 1-d


def _fill_head(out: common_pb2.Tensor, arr: np.ndarray, field: str, codec: Codec) -> np.ndarray:
    """Set out's dtype, shape and (for a lossy codec) compression; return the array whose
    little-endian bytes are out's data: the tensor itself, or its codes."""
    dtype, arr = _wire_array(arr, field)
    out.dtype = dtype.name
    out.shape.extend(arr.shape)
    if codec.lossless:
        return arr
    if dtype != np.float32:
        raise TensorValidationError(
            f"{field}.dtype: got {dtype.name!r}; the wire codec {codec.describe()} encodes float32"
        )
    enc = wire_codec.encode(arr, codec)
    out.compression.codes = enc.codes.dtype.name
    if enc.scale is not None:
        out.compression.scale = enc.scale.astype("<f4").tobytes()
    if enc.indices is not None:
        out.compression.indices = enc.indices.astype(wire_codec.INDEX_DTYPE).tobytes()
    return np.asarray(enc.codes, enc.codes.dtype.newbyteorder("<"))


def fill_tensor(
    out: common_pb2.Tensor, arr: np.ndarray, field: str = "tensor", codec: Codec = RAW
) -> None:
    """Write an array into a Tensor field in place: little-endian, C-ordered raw bytes (or the
    codes of `codec`).

    Filling the parent message's own sub-message avoids the copy that building a Tensor and
    assigning it would make (several ms for a 3.2 MB activation).
    """
    out.data = _fill_head(out, arr, field, codec).tobytes(order="C")


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _bytes_key(number: int) -> bytes:
    """Key of a length-delimited field (wire type 2)."""
    return _varint(number << 3 | 2)


_TENSOR_DATA = common_pb2.Tensor.DESCRIPTOR.fields_by_name["data"].number


def encode_with_tensor(
    msg: Message, field: str, arr: np.ndarray, name: str, codec: Codec = RAW
) -> bytes:
    """Serialize msg with arr (or its codes under `codec`) as its Tensor `field`, copying the
    bytes once.

    msg is serialized with the tensor's dtype and shape; its data follows as a second
    occurrence of `field` holding only Tensor.data. Parsers merge repeated occurrences of a
    message field (protobuf encoding spec, "Last One Wins" / merging), so the result parses to
    the same message as msg with fill_tensor(...) serialized; it skips the three copies that
    tobytes, the assignment and SerializeToString would make.
    """
    data = memoryview(_fill_head(getattr(msg, field), arr, name, codec).reshape(-1).view(np.uint8))
    inner = _bytes_key(_TENSOR_DATA) + _varint(data.nbytes)
    number = msg.DESCRIPTOR.fields_by_name[field].number
    outer = _bytes_key(number) + _varint(len(inner) + data.nbytes)
    return b"".join((msg.SerializeToString(), outer, inner, data))


def to_message(arr: np.ndarray, field: str = "tensor") -> common_pb2.Tensor:
    """Encode an array as a new Tensor message."""
    msg = common_pb2.Tensor()
    fill_tensor(msg, arr, field)
    return msg


def _check_shape(shape: tuple[int, ...], expected: TensorSpec | None, field: str) -> None:
    if any(dim < 0 for dim in shape):
        raise TensorValidationError(f"{field}.shape: got {shape}, expected non-negative dims")
    if expected is None:
        return
    fits = len(shape) == len(expected.shape) and all(
        want is None or want == got for got, want in zip(shape, expected.shape, strict=True)
    )
    if not fits:
        want = tuple("*" if dim is None else dim for dim in expected.shape)
        raise TensorValidationError(f"{field}.shape: got {shape}, expected {want} (* = any)")


def _check_size(
    shape: tuple[int, ...], data: bytes, dtype: np.dtype, max_bytes: int, field: str
) -> None:
    declared = math.prod(shape) * dtype.itemsize
    for size in (len(data), declared):
        if size > max_bytes:
            raise TensorValidationError(
                f"{field}: {size} bytes (shape {shape}, {dtype.name}) exceeds the limit of "
                f"{max_bytes} bytes"
            )
    if len(data) != declared:
        raise TensorValidationError(
            f"{field}.data: got {len(data)} bytes, expected {declared} "
            f"(= prod{shape} x {dtype.itemsize} bytes of {dtype.name})"
        )


def from_message(
    msg: common_pb2.Tensor,
    expected: TensorSpec | None = None,
    max_bytes: int = DEFAULT_MAX_TENSOR_BYTES,
    field: str = "tensor",
) -> np.ndarray:
    """Decode and validate a Tensor; the result is a read-only view of the message bytes (a new
    float32 array when it came compressed). With `expected`, its codec is the one required."""
    dtype = _dtype_named(msg.dtype, field)
    if expected is not None and msg.dtype != expected.dtype:
        raise TensorValidationError(
            f"{field}.dtype: got {msg.dtype!r}, expected {expected.dtype!r}"
        )
    shape = tuple(msg.shape)
    _check_shape(shape, expected, field)
    codec = None if expected is None else expected.codec
    if msg.HasField("compression") or (codec is not None and not codec.lossless):
        return _decode_compressed(msg, shape, codec, max_bytes, field)
    data = msg.data  # each access copies the bytes out of the parsed message
    _check_size(shape, data, dtype, max_bytes, field)
    arr = np.frombuffer(data, dtype=dtype.newbyteorder("<")).reshape(shape)
    if dtype == np.bool_ and arr.size and int(arr.view(np.uint8).max()) > 1:
        bad = int(arr.view(np.uint8).max())
        raise TensorValidationError(f"{field}.data: bool tensor holds byte {bad}, expected 0 or 1")
    return arr


# --- compressed tensors (job.wire) ---------------------------------------------------------------

_PRECISION_OF_CODES = {dtype.name: name for name, dtype in wire_codec.CODE_DTYPES.items()}
_CODE_NAMES = ", ".join(_PRECISION_OF_CODES)


def _decode_compressed(
    msg: common_pb2.Tensor,
    shape: tuple[int, ...],
    codec: Codec | None,
    max_bytes: int,
    field: str,
) -> np.ndarray:
    """Check a compressed Tensor against the expected codec (None: what it declares), decode."""
    comp, where = msg.compression, f"{field}.compression"
    if codec is not None and not codec.lossless and not msg.HasField("compression"):
        raise TensorValidationError(
            f"{field}: got raw {msg.dtype} data, expected {codec.describe()} codes (job.wire)"
        )
    if codec is not None and codec.lossless:
        raise TensorValidationError(
            f"{field}: got {comp.codes or '?'} codes, expected raw {msg.dtype} (no job.wire codec)"
        )
    if msg.dtype != "float32":
        raise TensorValidationError(f"{field}.dtype: got {msg.dtype!r}; compressed tensors "
                                    "decode to 'float32'")
    precision = _PRECISION_OF_CODES.get(comp.codes)
    if precision is None or (codec is not None and precision != codec.precision):
        want = _CODE_NAMES if codec is None else repr(codec.code_dtype.name)
        raise TensorValidationError(f"{where}.codes: got {comp.codes!r}, expected {want}")
    n = math.prod(shape)
    if n * 4 > max_bytes:
        raise TensorValidationError(f"{field}: {n * 4} bytes decoded (shape {shape}, float32) "
                                    f"exceeds the limit of {max_bytes} bytes")
    n_scales = codec.n_scales(shape) if codec is not None else _declared_scales(
        comp.scale, precision, shape, where)
    scale = _scales(comp.scale, n_scales, where)
    if codec is None:  # as many positions as it declares
        kept_n = -(-len(comp.indices) // 4) if comp.indices else None
    else:
        kept_n = None if codec.topk is None else codec.kept(n)
    indices = _positions(comp.indices, kept_n, n, where)
    kept = n if indices is None else len(indices)
    code = wire_codec.CODE_DTYPES[precision]
    data = msg.data
    if len(data) != kept * code.itemsize:
        raise TensorValidationError(f"{field}.data: got {len(data)} bytes, expected "
                                    f"{kept * code.itemsize} (= {kept} {code.name} codes)")
    codes = np.frombuffer(data, code.newbyteorder("<"))
    return wire_codec.decode(Encoded(shape, codes, scale, indices))


def _declared_scales(raw: bytes, precision: str, shape: tuple[int, ...], where: str) -> int:
    """Scales a compressed tensor with no expected codec carries: int8 per tensor or channel."""
    if precision != "int8":
        return 0
    allowed = {1, wire_codec.channels(shape)}
    if len(raw) % 4 or len(raw) // 4 not in allowed:
        raise TensorValidationError(f"{where}.scale: got {len(raw)} bytes, expected 4 x one of "
                                    f"{sorted(allowed)} float32 scales (per tensor, per channel)")
    return len(raw) // 4


def _scales(raw: bytes, count: int, where: str) -> np.ndarray | None:
    """The float32 scales: exactly `count`, finite and >= 0 (None when the codes have none)."""
    if len(raw) != 4 * count:
        what = "none (the codes carry no scale)" if count == 0 else f"{4 * count} (= {count} float32)"
        raise TensorValidationError(f"{where}.scale: got {len(raw)} bytes, expected {what}")
    if count == 0:
        return None
    scale = np.frombuffer(raw, "<f4")
    bad = scale[~(np.isfinite(scale) & (scale >= 0))]
    if bad.size:
        raise TensorValidationError(f"{where}.scale: got {float(bad[0])!r}, expected finite "
                                    "scales >= 0")
    return scale


def _positions(raw: bytes, count: int | None, n: int, where: str) -> np.ndarray | None:
    """Top-k positions: `count` of them, ascending, below n (None: dense codes, no positions)."""
    if count is None:
        if raw:
            raise TensorValidationError(f"{where}.indices: got {len(raw)} bytes, expected none "
                                        "(dense codes)")
        return None
    if len(raw) != 4 * count:
        raise TensorValidationError(f"{where}.indices: got {len(raw)} bytes, expected "
                                    f"{4 * count} (= {count} uint32 positions of {n})")
    idx = np.frombuffer(raw, wire_codec.INDEX_DTYPE)
    if count and (int(idx[-1]) >= n or bool(np.any(idx[1:] <= idx[:-1]))):
        raise TensorValidationError(f"{where}.indices: expected {count} ascending positions "
                                    f"below {n}")
    return idx
