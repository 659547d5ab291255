"""The StageService servicer: validates incoming tensors and hands them to the worker's buffers."""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from typing import NoReturn

import grpc
from google.protobuf.message_factory import GetMessageClass

from testbed.runtime.store import BoundedBuffer
from testbed.runtime.wire import grpc_util, serde, tensors
from testbed.runtime.wire.proto import common_pb2, stage_pb2, stage_pb2_grpc
from testbed.runtime.wire.serde import Activation, Gradient, Health, Resplit, StageStats, Start
from testbed.runtime.wire.tensors import TensorSpec
from testbed.runtime.worker_metrics import WorkerMetrics

_MIN_WAIT_S = 0.1
_WAIT_MARGIN_S = 0.5


@dataclass
class StageNode:
    """The state a stage worker shares between its RPC threads and its compute loop."""

    role: str
    stage_ids: tuple[int, ...]
    metrics: WorkerMetrics
    in_spec: TensorSpec | None  # None: no upstream (first stage or whole model)
    grad_spec: TensorSpec | None  # None: no downstream
    inputs: BoundedBuffer[Activation] | None = None
    grads: BoundedBuffer[Gradient] | None = None
    started: threading.Event = field(default_factory=threading.Event)
    stopped: threading.Event = field(default_factory=threading.Event)
    start: Start | None = None
    step: int = 0
    done: bool = False
    max_tensor_bytes: int = tensors.DEFAULT_MAX_TENSOR_BYTES
    # kt-sections: per held section, the teacher input and target it expects (else in_spec)
    section_specs: dict[int, tuple[TensorSpec, TensorSpec]] | None = None
    # re-splits the controller asked for, in order; the loop takes them between steps
    resplits: queue.SimpleQueue[Resplit] = field(default_factory=queue.SimpleQueue)

    def input_specs(self, stage_id: int) -> tuple[TensorSpec | None, TensorSpec | None]:
        """(activation spec, target spec) for a Forward message addressed to `stage_id`."""
        if self.section_specs is None:
            return self.in_spec, None
        if stage_id not in self.section_specs:
            raise tensors.MessageValidationError(
                f"ActivationBatch.stage_id: got {stage_id}, expected one of "
                f"{sorted(self.section_specs)} (the sections this worker holds)"
            )
        return self.section_specs[stage_id]

    def health(self) -> Health:
        return Health(self.role, self.stage_ids, self.step, self.done)


def _wait_s(context: grpc.ServicerContext) -> float:
    remaining = context.time_remaining()
    return _MIN_WAIT_S if remaining is None else max(_MIN_WAIT_S, remaining - _WAIT_MARGIN_S)


class StageServicer(stage_pb2_grpc.StageServiceServicer):
    """Forward/Backward put validated tensors into the node's buffers; Control starts and stops."""

    def __init__(self, node: StageNode) -> None:
        self.node = node

    def Forward(  # noqa: N802 - name fixed by the generated servicer
        self, request: bytes, context: grpc.ServicerContext
    ) -> common_pb2.Ack:
        """request: a serialized ActivationBatch (register_servicer passes the bytes as they came)."""
        node = self.node
        if node.inputs is None or node.in_spec is None:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"{node.stage_ids} take no input")
        try:
            with node.metrics.timer("decode_s"):
                msg = serde.parse_message(stage_pb2.ActivationBatch, request)
                h_spec, target_spec = node.input_specs(msg.stage_id)
                act = serde.activation_from_message(
                    msg, h_spec, _labels_spec(), node.max_tensor_bytes, target_spec
                )
        except tensors.MessageValidationError as err:
            _reject(node, context, err)
        node.metrics.transfer("received", "upstream", len(request), serde.raw_nbytes(act))
        if not node.inputs.put(act, timeout=_wait_s(context)):  # type: ignore[union-attr]
            context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"activation store full (capacity {node.inputs.capacity}) or closed",  # type: ignore[union-attr]
            )
        return common_pb2.Ack(id=act.batch_id)

    def Backward(  # noqa: N802
        self, request: bytes, context: grpc.ServicerContext
    ) -> common_pb2.Ack:
        """request: a serialized GradientBatch."""
        node = self.node
        if node.grads is None or node.grad_spec is None:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"{node.stage_ids} take no gradient")
        try:
            with node.metrics.timer("decode_s"):
                msg = serde.parse_message(stage_pb2.GradientBatch, request)
                grad = serde.gradient_from_message(msg, node.grad_spec, node.max_tensor_bytes)
        except tensors.MessageValidationError as err:
            _reject(node, context, err)
        node.metrics.transfer("received", "downstream", len(request), serde.raw_nbytes(grad))
        if not node.grads.put(grad, timeout=_wait_s(context)):  # type: ignore[union-attr]
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "gradient buffer full or closed")
        return common_pb2.Ack(id=grad.batch_id)

    def Health(  # noqa: N802
        self, request: common_pb2.Empty, context: grpc.ServicerContext
    ) -> stage_pb2.HealthReply:
        return serde.health_to_message(self.node.health())

    @grpc_util.invalid_argument_on(tensors.MessageValidationError)
    def Control(  # noqa: N802
        self, request: stage_pb2.ControlRequest, context: grpc.ServicerContext
    ) -> common_pb2.Ack:
        command = serde.control_from_message(request)
        if isinstance(command, Start):
            self.node.start = command
            self.node.started.set()
        elif isinstance(command, Resplit):
            self.node.resplits.put(command)
        else:
            self.node.stopped.set()
        return common_pb2.Ack(id=self.node.step)

    def Stats(  # noqa: N802
        self, request: common_pb2.Empty, context: grpc.ServicerContext
    ) -> stage_pb2.StatsReply:
        return serde.stats_to_message(node_stats(self.node))


# Forward and Backward take the request's bytes: the servicer parses them itself (a message
# that does not parse is INVALID_ARGUMENT, not INTERNAL) and counts the bytes that came,
# instead of re-serializing the parsed message to learn its size.
_BYTES_IN = ("Forward", "Backward")


def register_servicer(servicer: StageServicer, server: grpc.Server) -> None:
    """Add servicer to server: the generated registration, with raw-bytes Forward/Backward."""
    service = stage_pb2.DESCRIPTOR.services_by_name["StageService"]
    handlers = {}
    for method in service.methods:
        request = None if method.name in _BYTES_IN else GetMessageClass(method.input_type)
        handlers[method.name] = grpc.unary_unary_rpc_method_handler(
            getattr(servicer, method.name),
            request_deserializer=None if request is None else request.FromString,
            response_serializer=GetMessageClass(method.output_type).SerializeToString,
        )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service.full_name, handlers),)
    )


def _reject(node: StageNode, context: grpc.ServicerContext, err: Exception) -> NoReturn:
    """Count a malformed message and answer INVALID_ARGUMENT; the worker carries on."""
    node.metrics.add("invalid_received")
    context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
    raise AssertionError("unreachable: context.abort raises") from err


def _labels_spec() -> TensorSpec:
    return TensorSpec("int64", (None,))


def node_stats(node: StageNode) -> StageStats:
    """The node's monotonic counters, summed over peers."""
    counts: dict[str, int] = {}
    for key, c in node.metrics.summary()["peers"].items():
        direction = key.split(":", 1)[0]
        for name in ("wire_bytes", "raw_bytes"):
            counts[f"{name}_{direction}"] = counts.get(f"{name}_{direction}", 0) + int(c[name])
    m = node.metrics.summary()["peers"]
    return StageStats(
        step=node.step,
        forward_received=int(m.get("received:upstream", {}).get("messages", 0)),
        forward_sent=int(m.get("sent:downstream", {}).get("messages", 0)),
        backward_received=int(m.get("received:downstream", {}).get("messages", 0)),
        backward_sent=int(m.get("sent:upstream", {}).get("messages", 0)),
        invalid_received=int(node.metrics.totals.get("invalid_received", 0)),
        **counts,
    )
