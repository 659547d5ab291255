"""Tensors on the wire: round trips of every allowed dtype, and every check of dtype, shape and
size on receipt."""

from __future__ import annotations

import numpy as np
import pytest

from testbed.runtime.wire import tensors
from testbed.runtime.wire.proto import common_pb2
from testbed.runtime.wire.tensors import TensorSpec, TensorValidationError


@pytest.mark.parametrize("dtype", sorted(tensors.ALLOWED_DTYPES))
def test_round_trip_every_allowed_dtype(dtype: str) -> None:
    arr = (np.arange(24) % 2).astype(tensors.ALLOWED_DTYPES[dtype]).reshape(2, 3, 4)
    back = tensors.from_message(tensors.to_message(arr), TensorSpec(dtype, (None, 3, 4)))
    assert back.dtype == arr.dtype and back.shape == arr.shape
    assert back.tobytes() == arr.tobytes()


def test_bfloat16_is_allowed() -> None:
    assert "bfloat16" in tensors.ALLOWED_DTYPES


def test_non_contiguous_and_big_endian_inputs_are_normalised() -> None:
    base = np.arange(12, dtype=">f4").reshape(3, 4)
    view = base.T  # Fortran-ordered, big-endian
    msg = tensors.to_message(view)
    assert msg.dtype == "float32" and list(msg.shape) == [4, 3]
    np.testing.assert_array_equal(tensors.from_message(msg), view.astype("<f4"))


def test_scalar_and_empty_tensors() -> None:
    scalar = tensors.from_message(tensors.to_message(np.asarray(2.5, np.float32)))
    assert scalar.shape == () and scalar == np.float32(2.5)
    empty = tensors.from_message(tensors.to_message(np.zeros((0, 5), np.int64)))
    assert empty.shape == (0, 5)


def test_decoded_array_is_read_only_view() -> None:
    back = tensors.from_message(tensors.to_message(np.ones(4, np.float32)))
    assert not back.flags.writeable


def test_to_message_rejects_unsupported_dtype() -> None:
    with pytest.raises(
        TensorValidationError, match=r"tensor\.dtype: got 'float64', expected one of"
    ):
        tensors.to_message(np.zeros(3))


def _tensor(
    dtype: str = "float32", shape: tuple[int, ...] = (2, 3), nbytes: int | None = None
) -> common_pb2.Tensor:
    size = int(np.prod(shape)) * np.dtype(tensors.ALLOWED_DTYPES.get(dtype, np.uint8)).itemsize
    return common_pb2.Tensor(
        dtype=dtype, shape=shape, data=b"\0" * (size if nbytes is None else nbytes)
    )


@pytest.mark.parametrize(
    ("msg", "spec", "max_bytes", "pattern"),
    [
        (_tensor("float64"), None, 1024, r"x\.dtype: got 'float64', expected one of .*float32"),
        (
            _tensor("int32"),
            TensorSpec("float32", (None, 3)),
            1024,
            r"x\.dtype: got 'int32', expected 'float32'",
        ),
        (
            _tensor(shape=(2, 4)),
            TensorSpec("float32", (None, 3)),
            1024,
            r"x\.shape: got \(2, 4\), expected \('\*', 3\)",
        ),
        (
            _tensor(shape=(2, 3, 1)),
            TensorSpec("float32", (None, 3)),
            1024,
            r"x\.shape: got \(2, 3, 1\)",
        ),
        (
            _tensor(shape=(2, -3), nbytes=0),
            None,
            1024,
            r"x\.shape: got \(2, -3\), expected non-negative",
        ),
        (_tensor(nbytes=23), None, 1024, r"x\.data: got 23 bytes, expected 24"),
        (
            _tensor(shape=(100, 100)),
            None,
            1024,
            r"x: 40000 bytes .* exceeds the limit of 1024 bytes",
        ),
        (_tensor(shape=(2**40, 2**40), nbytes=4), None, 1024, r"exceeds the limit of 1024 bytes"),
    ],
)
def test_from_message_rejects(
    msg: common_pb2.Tensor, spec: TensorSpec | None, max_bytes: int, pattern: str
) -> None:
    with pytest.raises(TensorValidationError, match=pattern):
        tensors.from_message(msg, spec, max_bytes, field="x")


def test_bool_tensor_with_non_boolean_bytes_is_rejected() -> None:
    msg = common_pb2.Tensor(dtype="bool", shape=[2], data=b"\x01\x07")
    with pytest.raises(TensorValidationError, match="holds byte 7, expected 0 or 1"):
        tensors.from_message(msg)


@pytest.mark.parametrize(
    ("dtype", "shape", "pattern"),
    [("float64", (1,), "TensorSpec.dtype: got 'float64'"), ("float32", (-1,), "TensorSpec.shape")],
)
def test_tensor_spec_validates_itself(dtype: str, shape: tuple[int, ...], pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        TensorSpec(dtype, shape)
