"""The stage messages (activations, gradients, control, health, counters) to and from plain
dataclasses, their tensors encoded and checked by tensors (the parameter server's messages build
on both in serde_ps)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, TypeVar

import numpy as np
from google.protobuf.message import DecodeError, Message

from testbed.algorithms.wire_codec import RAW, Codec
from testbed.runtime.wire.proto import common_pb2, stage_pb2
from testbed.runtime.wire.tensors import (
    DEFAULT_MAX_TENSOR_BYTES,
    MessageValidationError,
    TensorSpec,
    TensorValidationError,
    encode_with_tensor,
    fill_tensor,
    from_message,
)

_M = TypeVar("_M", bound=Message)

@dataclass(frozen=True, eq=False)
class Activation:
    """Activations of one micro-batch sent downstream, with the labels the last stage needs."""

    batch_id: int
    step: int
    h: np.ndarray
    labels: np.ndarray
    final: bool = False  # the producer's last batch
    target: np.ndarray | None = None  # kt-sections: the teacher output this section learns
    stage_id: int = 0  # kt-sections: which of the receiver's sections the batch is for
    drain: bool = False  # the producer's last batch before a re-split


@dataclass(frozen=True, eq=False)
class Gradient:
    """Gradient (BP) or synthetic-gradient regression target (SG) for one batch, sent upstream."""

    batch_id: int
    step: int
    g: np.ndarray


@dataclass(frozen=True, eq=False)
class Weights:
    """One stage's weights at a version; dict order is the stage's weight order."""

    stage_id: int
    version: int
    tensors: dict[str, np.ndarray]
    split_epoch: int = 0  # the split the stage belongs to (0: the spec's)
    sg_boundary: int | None = None  # set: the SG module at the boundary after this unit instead


@dataclass(frozen=True)
class Health:
    """What a worker reports about itself."""

    role: str
    stage_ids: tuple[int, ...]
    step: int
    done: bool = False


@dataclass(frozen=True)
class StageStats:
    """A stage worker's monotonic counters."""

    step: int = 0
    forward_received: int = 0
    forward_sent: int = 0
    backward_received: int = 0
    backward_sent: int = 0
    invalid_received: int = 0
    wire_bytes_received: int = 0
    wire_bytes_sent: int = 0
    raw_bytes_received: int = 0
    raw_bytes_sent: int = 0


Mode = Literal["bp", "sg"]
_MODES: dict[Mode, int] = {"bp": stage_pb2.TRAINING_MODE_BP, "sg": stage_pb2.TRAINING_MODE_SG}


@dataclass(frozen=True)
class Start:
    """Control command: begin training with this configuration."""

    run_id: str
    mode: Mode
    max_steps: int = 0
    batch_size: int = 0
    learning_rate: float = 0.0
    seed: int = 0
    peers: Mapping[str, str] = dataclasses.field(default_factory=dict)  # role -> "host:port"


@dataclass(frozen=True)
class Stop:
    """Control command: stop training."""

    reason: str = ""


@dataclass(frozen=True)
class Resplit:
    """Control command (and the parameter server's Resplit): from split `epoch` on, stage i
    holds units stage_ends[i-1]+1 .. stage_ends[i]."""

    epoch: int
    stage_ends: tuple[int, ...]


# --- sizes --------------------------------------------------------------------------------------


def raw_nbytes(value: np.ndarray | Activation | Gradient | Weights) -> int:
    """Bytes of tensor payload carried by value (what an ideal wire format would send)."""
    if isinstance(value, Activation):
        extra = 0 if value.target is None else value.target.nbytes
        return int(value.h.nbytes + value.labels.nbytes + extra)
    if isinstance(value, Gradient):
        return int(value.g.nbytes)
    if isinstance(value, Weights):
        return sum(int(t.nbytes) for t in value.tensors.values())
    return int(np.asarray(value).nbytes)


def wire_nbytes(msg: Message) -> int:
    """Serialized size of a message in bytes (excluding gRPC framing)."""
    return int(msg.ByteSize())


# --- stage messages ------------------------------------------------------------------------------


def _activation_head(act: Activation) -> stage_pb2.ActivationBatch:
    """An ActivationBatch with everything but the activations."""
    msg = stage_pb2.ActivationBatch(
        batch_id=act.batch_id, step=act.step, final=act.final, stage_id=act.stage_id,
        drain=act.drain,
    )
    fill_tensor(msg.labels, act.labels, "ActivationBatch.labels")
    if act.target is not None:
        fill_tensor(msg.target, act.target, "ActivationBatch.target")
    return msg


def activation_to_message(act: Activation, codec: Codec = RAW) -> stage_pb2.ActivationBatch:
    """Encode an Activation as a message (the form encode_activation's bytes parse to)."""
    msg = _activation_head(act)
    fill_tensor(msg.activations, act.h, "ActivationBatch.activations", codec)
    return msg


def encode_activation(act: Activation, codec: Codec = RAW) -> bytes:
    """Serialize an Activation for StageService.Forward (the activations, or their codes under
    `codec`, copied once)."""
    return encode_with_tensor(
        _activation_head(act), "activations", act.h, "ActivationBatch.activations", codec
    )


def parse_message(cls: type[_M], raw: bytes) -> _M:
    """Parse a serialized message that came over the network; MessageValidationError if not."""
    try:
        return cls.FromString(raw)
    except DecodeError as err:
        raise MessageValidationError(
            f"{cls.DESCRIPTOR.name}: {len(raw)} bytes that do not parse ({err}); expected a "
            f"serialized testbed.v1.{cls.DESCRIPTOR.name}"
        ) from None


def activation_from_message(
    msg: stage_pb2.ActivationBatch,
    h_spec: TensorSpec | None = None,
    labels_spec: TensorSpec | None = None,
    max_bytes: int = DEFAULT_MAX_TENSOR_BYTES,
    target_spec: TensorSpec | None = None,
) -> Activation:
    """Decode and validate an ActivationBatch; every tensor must agree on the batch size.

    A target is required when `target_spec` is given (kt-sections) and refused otherwise.
    """
    h = from_message(msg.activations, h_spec, max_bytes, "ActivationBatch.activations")
    labels = from_message(msg.labels, labels_spec, max_bytes, "ActivationBatch.labels")
    _same_batch(h, labels, "labels")
    target = None
    if msg.HasField("target") != (target_spec is not None):
        want = "a target (teacher output)" if target_spec is not None else "no target"
        raise MessageValidationError(f"ActivationBatch.target: expected {want} for this worker")
    if target_spec is not None:
        target = from_message(msg.target, target_spec, max_bytes, "ActivationBatch.target")
        _same_batch(h, target, "target")
    return Activation(msg.batch_id, msg.step, h, labels, msg.final, target, msg.stage_id,
                      msg.drain)


def _same_batch(h: np.ndarray, other: np.ndarray, field: str) -> None:
    if h.ndim and other.ndim and h.shape[0] != other.shape[0]:
        raise TensorValidationError(
            f"ActivationBatch.{field}.shape: got batch {other.shape[0]}, expected {h.shape[0]} "
            "(the activations' batch size)"
        )


def gradient_to_message(grad: Gradient, codec: Codec = RAW) -> stage_pb2.GradientBatch:
    """Encode a Gradient as a message (the form encode_gradient's bytes parse to)."""
    msg = stage_pb2.GradientBatch(batch_id=grad.batch_id, step=grad.step)
    fill_tensor(msg.gradient, grad.g, "GradientBatch.gradient", codec)
    return msg


def encode_gradient(grad: Gradient, codec: Codec = RAW) -> bytes:
    """Serialize a Gradient for StageService.Backward (the tensor or its codes copied once)."""
    head = stage_pb2.GradientBatch(batch_id=grad.batch_id, step=grad.step)
    return encode_with_tensor(head, "gradient", grad.g, "GradientBatch.gradient", codec)


def gradient_from_message(
    msg: stage_pb2.GradientBatch,
    spec: TensorSpec | None = None,
    max_bytes: int = DEFAULT_MAX_TENSOR_BYTES,
) -> Gradient:
    """Decode and validate a GradientBatch."""
    g = from_message(msg.gradient, spec, max_bytes, "GradientBatch.gradient")
    return Gradient(batch_id=msg.batch_id, step=msg.step, g=g)


def health_to_message(health: Health) -> stage_pb2.HealthReply:
    """Encode a Health report."""
    return stage_pb2.HealthReply(
        role=health.role, stage_ids=health.stage_ids, step=health.step, done=health.done
    )


def health_from_message(msg: stage_pb2.HealthReply) -> Health:
    """Decode a HealthReply."""
    return Health(msg.role, tuple(msg.stage_ids), msg.step, msg.done)


def stats_to_message(stats: StageStats) -> stage_pb2.StatsReply:
    """Encode a worker's counters."""
    return stage_pb2.StatsReply(**dataclasses.asdict(stats))


def stats_from_message(msg: stage_pb2.StatsReply) -> StageStats:
    """Decode a StatsReply."""
    return StageStats(**{f.name: getattr(msg, f.name) for f in dataclasses.fields(StageStats)})


def split_to_message(plan: Resplit) -> common_pb2.SplitPlan:
    return common_pb2.SplitPlan(epoch=plan.epoch, stage_ends=list(plan.stage_ends))


def split_from_message(msg: common_pb2.SplitPlan) -> Resplit:
    """A SplitPlan; the stage ends must be increasing (the receiver checks them against its model)."""
    ends = tuple(int(e) for e in msg.stage_ends)
    if not ends or list(ends) != sorted(set(ends)):
        raise MessageValidationError(f"SplitPlan.stage_ends: got {list(ends)}, expected "
                                     "increasing unit indices")
    return Resplit(int(msg.epoch), ends)


def control_to_message(command: Start | Stop | Resplit) -> stage_pb2.ControlRequest:
    """Encode a Start, Stop or Resplit command."""
    if isinstance(command, Stop):
        return stage_pb2.ControlRequest(stop=stage_pb2.StopCommand(reason=command.reason))
    if isinstance(command, Resplit):
        return stage_pb2.ControlRequest(resplit=split_to_message(command))
    if command.mode not in _MODES:
        raise ValueError(f"Start.mode: got {command.mode!r}, expected one of {sorted(_MODES)}")
    start = stage_pb2.StartCommand(
        run_id=command.run_id,
        mode=_MODES[command.mode],  # type: ignore[arg-type]
        max_steps=command.max_steps,
        batch_size=command.batch_size,
        learning_rate=command.learning_rate,
        seed=command.seed,
        peers=dict(command.peers),
    )
    return stage_pb2.ControlRequest(start=start)


def control_from_message(msg: stage_pb2.ControlRequest) -> Start | Stop | Resplit:
    """Decode a ControlRequest; rejects an empty command or an unspecified training mode."""
    which = msg.WhichOneof("command")
    if which == "stop":
        return Stop(reason=msg.stop.reason)
    if which == "resplit":
        return split_from_message(msg.resplit)
    if which != "start":
        raise MessageValidationError(
            "ControlRequest.command: got nothing, expected start, stop or resplit")
    modes: dict[int, Mode] = {number: name for name, number in _MODES.items()}
    mode = modes.get(msg.start.mode)
    if mode is None:
        raise MessageValidationError(
            f"ControlRequest.start.mode: got {msg.start.mode}, expected one of "
            f"{sorted(modes)} ({', '.join(sorted(_MODES))})"
        )
    s = msg.start
    return Start(s.run_id, mode, s.max_steps, s.batch_size, s.learning_rate, s.seed, dict(s.peers))
