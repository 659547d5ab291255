"""Stage and parameter-server messages: round trips, validation errors, wire overhead."""

from __future__ import annotations

import numpy as np
import pytest

from testbed.runtime.wire import serde, serde_ps, tensors
from testbed.runtime.wire.proto import parameter_pb2, stage_pb2
from testbed.runtime.wire.serde import (
    Activation,
    Gradient,
    Health,
    StageStats,
    Start,
    Stop,
    Weights,
)
from testbed.runtime.wire.tensors import TensorSpec, TensorValidationError


def test_activation_round_trip_over_the_wire() -> None:
    act = Activation(
        batch_id=7, step=3, h=np.random.rand(4, 5).astype(np.float32), labels=np.arange(4)
    )
    wire = serde.activation_to_message(act).SerializeToString()
    back = serde.activation_from_message(
        stage_pb2.ActivationBatch.FromString(wire),
        TensorSpec("float32", (None, 5)),
        TensorSpec("int64", (None,)),
    )
    assert (back.batch_id, back.step) == (7, 3)
    np.testing.assert_array_equal(back.h, act.h)
    np.testing.assert_array_equal(back.labels, act.labels)


def test_activation_batch_size_mismatch_is_rejected() -> None:
    act = Activation(0, 0, h=np.zeros((4, 2), np.float32), labels=np.zeros(3, np.int32))
    with pytest.raises(TensorValidationError, match="labels.shape: got batch 3, expected 4"):
        serde.activation_from_message(serde.activation_to_message(act))


def test_gradient_round_trip_and_error_names_field() -> None:
    grad = Gradient(batch_id=1, step=2, g=np.ones((2, 3), np.float16))
    back = serde.gradient_from_message(
        serde.gradient_to_message(grad), TensorSpec("float16", (None, 3))
    )
    assert (back.batch_id, back.step, back.g.dtype) == (1, 2, np.dtype(np.float16))
    with pytest.raises(TensorValidationError, match=r"GradientBatch\.gradient\.dtype"):
        serde.gradient_from_message(
            serde.gradient_to_message(grad), TensorSpec("float32", (None, 3))
        )


def test_weights_round_trip_preserves_order() -> None:
    tensors = {
        "kernel": np.ones((3, 2), np.float32),
        "bias": np.zeros(2, np.float32),
        "a": np.ones(1, np.int32),
    }
    wire = serde_ps.weights_to_message(
        Weights(stage_id=2, version=9, tensors=tensors)
    ).SerializeToString()
    back = serde_ps.weights_from_message(parameter_pb2.WeightSet.FromString(wire))
    assert (back.stage_id, back.version, list(back.tensors)) == (2, 9, ["kernel", "bias", "a"])
    for name, arr in tensors.items():
        np.testing.assert_array_equal(back.tensors[name], arr)


def test_weights_validation() -> None:
    dup = parameter_pb2.WeightSet(
        tensors=[
            parameter_pb2.NamedTensor(name="w", tensor=tensors.to_message(np.ones(1, np.float32)))
        ]
        * 2
    )
    with pytest.raises(
        tensors.MessageValidationError, match=r"tensors\[1\]\.name: got 'w', expected a unique"
    ):
        serde_ps.weights_from_message(dup)
    msg = serde_ps.weights_to_message(Weights(0, 0, {"w": np.ones(2, np.float32)}))
    spec = {"w": TensorSpec("float32", (2,)), "b": TensorSpec("float32", (2,))}
    with pytest.raises(tensors.MessageValidationError, match=r"missing \['b'\]"):
        serde_ps.weights_from_message(msg, spec)
    with pytest.raises(tensors.MessageValidationError, match=r"got 'w', expected one of \['v'\]"):
        serde_ps.weights_from_message(msg, {"v": TensorSpec("float32", (2,))})


def test_control_health_stats_round_trip() -> None:
    start = Start(run_id="r1", mode="sg", max_steps=10, batch_size=32, learning_rate=0.01, seed=4)
    for command in (start, Stop(reason="done")):
        wire = serde.control_to_message(command).SerializeToString()
        assert serde.control_from_message(stage_pb2.ControlRequest.FromString(wire)) == command
    health = Health(role="stage", stage_ids=(1, 2), step=5)
    assert serde.health_from_message(serde.health_to_message(health)) == health
    stats = StageStats(step=3, forward_received=2, wire_bytes_sent=100)
    assert serde.stats_from_message(serde.stats_to_message(stats)) == stats


def test_control_rejects_empty_or_unspecified_mode() -> None:
    with pytest.raises(tensors.MessageValidationError, match="got nothing, expected start, stop or resplit"):
        serde.control_from_message(stage_pb2.ControlRequest())
    unspecified = stage_pb2.ControlRequest(start=stage_pb2.StartCommand(run_id="r"))
    with pytest.raises(tensors.MessageValidationError, match=r"start\.mode: got 0"):
        serde.control_from_message(unspecified)


def test_resplit_command_round_trips_and_rejects_unordered_ends() -> None:
    plan = serde.Resplit(2, (1, 3, 10))
    assert serde.control_from_message(serde.control_to_message(plan)) == plan
    bad = serde.control_to_message(serde.Resplit(1, (3, 1, 10)))
    with pytest.raises(tensors.MessageValidationError, match=r"stage_ends: got \[3, 1, 10\]"):
        serde.control_from_message(bad)


def test_wire_overhead_of_a_conv_activation_is_under_two_percent() -> None:
    act = Activation(
        1, 1, h=np.zeros((256, 14, 14, 32), np.float32), labels=np.zeros(256, np.int64)
    )
    msg = serde.activation_to_message(act)
    raw = serde.raw_nbytes(act)
    assert raw == 256 * 14 * 14 * 32 * 4 + 256 * 8
    assert serde.wire_nbytes(msg) == len(msg.SerializeToString())
    assert raw < serde.wire_nbytes(msg) <= 1.02 * raw
    assert raw < len(serde.encode_activation(act)) <= 1.02 * raw  # what StagePeer sends


def test_kt_activation_carries_its_target_and_section() -> None:
    act = Activation(5, 5, h=np.ones((4, 3), np.float32), labels=np.arange(4),
                     target=np.full((4, 2), 2.0, np.float32), stage_id=1)
    back = serde.activation_from_message(
        stage_pb2.ActivationBatch.FromString(serde.activation_to_message(act).SerializeToString()),
        TensorSpec("float32", (None, 3)), TensorSpec("int64", (None,)),
        target_spec=TensorSpec("float32", (None, 2)),
    )
    assert back.stage_id == 1 and back.target is not None
    np.testing.assert_array_equal(back.target, act.target)
    assert serde.raw_nbytes(back) == 4 * 3 * 4 + 4 * 8 + 4 * 2 * 4


def test_kt_target_is_required_exactly_where_expected() -> None:
    plain = Activation(0, 0, h=np.zeros((4, 3), np.float32), labels=np.zeros(4, np.int64))
    with pytest.raises(tensors.MessageValidationError, match="expected a target"):
        serde.activation_from_message(serde.activation_to_message(plain),
                                      target_spec=TensorSpec("float32", (None, 2)))
    with_target = Activation(0, 0, plain.h, plain.labels, target=np.zeros((4, 2), np.float32))
    with pytest.raises(tensors.MessageValidationError, match="expected no target"):
        serde.activation_from_message(serde.activation_to_message(with_target))
    wrong = Activation(0, 0, plain.h, plain.labels, target=np.zeros((3, 2), np.float32))
    with pytest.raises(TensorValidationError, match="target.shape: got batch 3, expected 4"):
        serde.activation_from_message(serde.activation_to_message(wrong),
                                      target_spec=TensorSpec("float32", (None, 2)))
    with pytest.raises(TensorValidationError, match=r"ActivationBatch\.target\.shape"):
        serde.activation_from_message(serde.activation_to_message(with_target),
                                      target_spec=TensorSpec("float32", (None, 5)))


def _encodings_agree(act: Activation) -> None:
    """encode_activation parses to the message activation_to_message builds, tensor for tensor."""
    canonical = serde.activation_to_message(act)
    encoded = serde.encode_activation(act)
    assert stage_pb2.ActivationBatch.FromString(encoded) == canonical
    assert list(canonical.activations.shape) == list(np.shape(act.h))
    # the tensor's data travels as a second occurrence of the field: a few header bytes more
    assert canonical.ByteSize() < len(encoded) <= canonical.ByteSize() + 12


@pytest.mark.parametrize("dtype", sorted(tensors.ALLOWED_DTYPES))
def test_encode_activation_equals_the_protobuf_message_for_every_dtype(dtype: str) -> None:
    h = (np.arange(120) % 2).astype(tensors.ALLOWED_DTYPES[dtype]).reshape(4, 5, 6)
    _encodings_agree(Activation(7, 3, h, np.arange(4), final=True))


@pytest.mark.parametrize(
    "h",
    [
        np.arange(12, dtype=">f4").reshape(3, 4).T,  # big-endian, Fortran-ordered view
        np.asarray(2.5, np.float32),  # a scalar
        np.zeros((0, 5), np.float32),  # empty
        np.ones((300, 1000), np.float32),  # > 1 MB: multi-byte length varints
    ],
    ids=["big-endian-view", "scalar", "empty", "large"],
)
def test_encode_activation_normalises_like_fill_tensor(h: np.ndarray) -> None:
    labels = np.arange(h.shape[0] if h.ndim else 0)
    _encodings_agree(Activation(1, 1, h, labels))


def test_encoded_kt_activation_and_gradient_parse_back() -> None:
    kt = Activation(5, 5, np.ones((4, 3), np.float32), np.arange(4),
                    target=np.full((4, 2), 2.0, np.float32), stage_id=1)
    _encodings_agree(kt)
    grad = Gradient(9, 4, np.linspace(-1, 1, 24, dtype=np.float32).reshape(4, 6))
    msg = serde.parse_message(stage_pb2.GradientBatch, serde.encode_gradient(grad))
    assert msg == serde.gradient_to_message(grad)
    back = serde.gradient_from_message(msg, TensorSpec("float32", (None, 6)))
    assert back.batch_id == 9 and back.step == 4 and np.array_equal(back.g, grad.g)


def test_parse_message_names_bytes_that_do_not_parse() -> None:
    with pytest.raises(tensors.MessageValidationError, match=r"GradientBatch: 3 bytes that do not"):
        serde.parse_message(stage_pb2.GradientBatch, b"\x1a\xff\x01")
