"""Compressed tensors (job.wire) in tensors, as they cross in stage messages: encoding, bytes,
and every check on receipt."""

from __future__ import annotations

import numpy as np
import pytest

from testbed.algorithms.wire_codec import RAW, Codec, round_trip
from testbed.runtime.wire import serde, tensors
from testbed.runtime.wire.proto import common_pb2, stage_pb2
from testbed.runtime.wire.serde import Activation, Gradient
from testbed.runtime.wire.tensors import TensorSpec, TensorValidationError

SHAPE = (8, 7, 7, 4)
CODECS = [
    Codec("fp16"),
    Codec("int8"),
    Codec("int8", "per-channel"),
    Codec("fp32", topk=0.1),
    Codec("fp16", topk=0.2),
    Codec("int8", "per-channel", topk=0.05),
]
LABELS = TensorSpec("int64", (None,))


def _h(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(SHAPE) * np.array([0.1, 1, 10, 100])).astype(np.float32)


def _spec(codec: Codec) -> TensorSpec:
    return TensorSpec("float32", (None, *SHAPE[1:]), codec)


def _parsed(codec: Codec, h: np.ndarray | None = None) -> stage_pb2.ActivationBatch:
    act = Activation(3, 3, _h() if h is None else h, np.arange(SHAPE[0]))
    return stage_pb2.ActivationBatch.FromString(serde.encode_activation(act, codec))


@pytest.mark.parametrize("codec", CODECS, ids=Codec.describe)
def test_receiver_gets_exactly_the_codec_round_trip(codec: Codec) -> None:
    h = _h()
    act = Activation(3, 3, h, np.arange(SHAPE[0]))
    wire = serde.encode_activation(act, codec)
    # the copy-once bytes parse to the reference message
    assert stage_pb2.ActivationBatch.FromString(wire) == serde.activation_to_message(act, codec)
    back = serde.activation_from_message(stage_pb2.ActivationBatch.FromString(wire),
                                         _spec(codec), LABELS)
    assert back.h.dtype == np.float32 and back.h.shape == SHAPE
    np.testing.assert_array_equal(back.h, round_trip(h, codec))
    assert not np.array_equal(back.h, h)  # lossy: the test would notice a codec left out
    assert serde.raw_nbytes(back) == serde.raw_nbytes(act)  # raw counts the float32 tensor


def test_message_bytes_shrink_with_the_codec() -> None:
    act = Activation(1, 1, np.ones((128, 14, 14, 32), np.float32), np.zeros(128, np.int64))
    raw = len(serde.encode_activation(act))
    assert raw / len(serde.encode_activation(act, Codec("fp16"))) > 1.99
    assert raw / len(serde.encode_activation(act, Codec("int8", "per-channel"))) > 3.98
    grad = Gradient(1, 1, np.ones((128, 256), np.float32))
    assert len(serde.encode_gradient(grad)) / len(serde.encode_gradient(grad, Codec("fp16"))) > 1.99


def test_gradient_round_trip_with_topk() -> None:
    codec = Codec("fp16", topk=0.1)
    g = _h(1).reshape(8, -1)
    msg = stage_pb2.GradientBatch.FromString(serde.encode_gradient(Gradient(2, 2, g), codec))
    back = serde.gradient_from_message(msg, TensorSpec("float32", (None, g.shape[1]), codec))
    np.testing.assert_array_equal(back.g, round_trip(g, codec))
    assert np.count_nonzero(back.g) == codec.kept(g.size)


@pytest.mark.parametrize("codec", CODECS[:3], ids=Codec.describe)
def test_without_an_expected_codec_the_message_says_how_to_decode(codec: Codec) -> None:
    msg = _parsed(codec)
    back = tensors.from_message(msg.activations)
    np.testing.assert_array_equal(back, round_trip(_h(), codec))


def _tamper(msg: stage_pb2.ActivationBatch, **fields: object) -> stage_pb2.ActivationBatch:
    for name, value in fields.items():
        target, attr = (msg.activations.compression, name) if name != "data" else (
            msg.activations, "data")
        setattr(target, attr, value)
    return msg


INT8C = Codec("int8", "per-channel")
TOPK = Codec("int8", "per-channel", topk=0.05)
_NAN, _NEG = np.float32(np.nan).tobytes(), np.float32(-1).tobytes()


@pytest.mark.parametrize(
    ("codec", "expected", "fields", "pattern"),
    [
        # scale: count, value
        (INT8C, INT8C, {"scale": b"\0" * 12}, r"compression\.scale: got 12 bytes, expected 16 "
                                              r"\(= 4 float32\)"),
        (INT8C, INT8C, {"scale": _NAN * 4}, r"compression\.scale: got nan, expected finite"),
        (INT8C, INT8C, {"scale": _NEG * 4}, r"compression\.scale: got -1\.0, expected finite"),
        (Codec("int8"), INT8C, {}, r"scale: got 4 bytes, expected 16"),  # per-tensor sent
        (Codec("fp16"), Codec("fp16"), {"scale": b"\0" * 4}, r"expected none \(the codes carry"),
        # size of the codes
        (INT8C, INT8C, {"data": b"\0" * 10}, r"activations\.data: got 10 bytes, expected 1568 "
                                             r"\(= 1568 int8 codes\)"),
        (TOPK, TOPK, {"data": b"\0" * 3}, r"got 3 bytes, expected 79 \(= 79 int8 codes\)"),
        # codes and codec
        (Codec("fp16"), INT8C, {}, r"compression\.codes: got 'float16', expected 'int8'"),
        (INT8C, INT8C, {"codes": "int4"}, r"codes: got 'int4', expected 'int8'"),
        (RAW, INT8C, {}, r"got raw float32 data, expected int8 per-channel codes"),
        (INT8C, RAW, {}, r"got int8 codes, expected raw float32"),
        # top-k positions
        (TOPK, TOPK, {"indices": b"\0" * 8}, r"indices: got 8 bytes, expected 316 \(= 79 uint32 "
                                             r"positions of 1568\)"),
        (TOPK, TOPK, {"indices": np.arange(78, -1, -1, dtype="<u4").tobytes()},
         r"indices: expected 79 ascending positions below 1568"),
        (TOPK, TOPK, {"indices": np.arange(1568 - 78, 1569, dtype="<u4").tobytes()},
         r"ascending positions below 1568"),
        (INT8C, INT8C, {"indices": b"\0" * 4}, r"indices: got 4 bytes, expected none"),
    ],
)
def test_a_wrong_scale_size_or_codec_is_refused(codec, expected, fields, pattern) -> None:
    msg = _tamper(_parsed(codec), **fields)
    with pytest.raises(TensorValidationError, match=pattern):
        serde.activation_from_message(msg, _spec(expected), LABELS)


def test_a_compressed_tensor_must_decode_to_float32_within_the_size_limit() -> None:
    msg = _parsed(INT8C)
    msg.activations.dtype = "float16"
    with pytest.raises(TensorValidationError, match="compressed tensors decode to 'float32'"):
        tensors.from_message(msg.activations)
    # a few bytes of top-k codes must not decode into a huge tensor
    huge = common_pb2.Tensor(dtype="float32", shape=[1 << 20, 1 << 10], data=b"\0",
                             compression=common_pb2.Compression(
                                 codes="int8", scale=b"\0" * 4, indices=b"\0" * 4))
    with pytest.raises(TensorValidationError, match="bytes decoded .* exceeds the limit"):
        tensors.from_message(huge, max_bytes=1 << 26)


def test_only_float32_tensors_can_be_compressed() -> None:
    act = Activation(1, 1, np.ones((2, 3), np.float16), np.arange(2))
    with pytest.raises(TensorValidationError, match="got 'float16'; the wire codec int8"):
        serde.encode_activation(act, Codec("int8"))


def test_labels_cross_uncompressed() -> None:
    msg = _parsed(INT8C)
    assert msg.activations.HasField("compression") and not msg.labels.HasField("compression")
