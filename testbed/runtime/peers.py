"""Clients of other workers: stage peers and the parameter server, every call with a deadline.

Where the launcher asked for it (`pacing.UPLINK_RATE_ENV`, set by the no-root fallback),
every request first waits for the device's shared uplink bucket; the wait is counted as
the worker metric "paced_s".
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import grpc

from testbed.algorithms.wire_codec import RAW, Codec
from testbed.runtime import pacing
from testbed.runtime.wire import grpc_util, serde, serde_ps
from testbed.runtime.wire.proto import common_pb2, parameter_pb2, parameter_pb2_grpc, stage_pb2
from testbed.runtime.wire.serde import Activation, Gradient, Resplit, Weights
from testbed.runtime.wire.serde_ps import ModelWeights, ParameterStatus
from testbed.runtime.wire.tensors import TensorSpec
from testbed.runtime.worker_metrics import WorkerMetrics, framed_nbytes


class PeerError(RuntimeError):
    """A call to another worker failed; names the peer, its address and the gRPC status."""


def _rpc_error(what: str, peer: str, address: str, err: grpc.RpcError) -> PeerError:
    code = err.code().name if hasattr(err, "code") else "?"
    details = err.details() if hasattr(err, "details") else str(err)
    return PeerError(f"{what} to {peer} at {address} failed: {code}: {details}")


def pace(uplink: pacing.TokenBucket | None, metrics: WorkerMetrics | None, wire: int) -> None:
    """Wait until a message of `wire` bytes may leave the device's uplink (no-op unpaced)."""
    if uplink is None:
        return
    waited = uplink.consume(framed_nbytes(wire))
    if metrics is not None and waited > 0:
        metrics.add("paced_s", waited)


def _stage_method(name: str) -> str:
    """gRPC path of a StageService method, e.g. "/testbed.v1.StageService/Forward"."""
    method = stage_pb2.DESCRIPTOR.services_by_name["StageService"].methods_by_name[name]
    return f"/{method.containing_service.full_name}/{method.name}"


class StagePeer:
    """Forward/Backward calls to one neighbouring stage worker, counting bytes per message.

    `uplink` paces what this worker sends; by default the process's bucket, if any. `wire` is
    the (activations, gradients) codec pair of job.wire: Forward and Backward encode with them.
    """

    def __init__(
        self,
        peer: str,
        address: str,
        deadline_s: float,
        metrics: WorkerMetrics,
        uplink: pacing.TokenBucket | None = None,
        wire: tuple[Codec, Codec] = (RAW, RAW),
    ) -> None:
        self.peer, self.address, self.deadline_s, self.metrics = peer, address, deadline_s, metrics
        self.wire = wire
        self.uplink = uplink or pacing.process_uplink()
        self.channel = grpc_util.open_channel(address)
        # requests go out as bytes that serde serialized (the tensor copied once)
        self._forward, self._backward = (
            self.channel.unary_unary(
                _stage_method(name), response_deserializer=common_pb2.Ack.FromString
            )
            for name in ("Forward", "Backward")
        )

    def _call(self, what: str, method: Any, msg: bytes, raw: int) -> None:
        wire = len(msg)
        with self.metrics.timer(f"send_{self.peer}_s"):  # pacing, the RPC and its retries
            self._send(what, method, msg, wire)
        self.metrics.transfer("sent", self.peer, wire, raw)

    def _send(self, what: str, method: Any, msg: bytes, wire: int) -> None:
        while True:
            pace(self.uplink, self.metrics, wire)  # a retry crosses the link again
            try:
                deadline = pacing.transfer_deadline(self.deadline_s, wire)
                grpc_util.call_with_deadline(method, msg, deadline, wait_for_ready=True)
                break
            except grpc.RpcError as err:
                if err.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:  # type: ignore[attr-defined]
                    raise _rpc_error(what, self.peer, self.address, err) from None
                self.metrics.add("send_retries")  # peer's buffer stayed full for a whole wait

    def forward(self, act: Activation) -> None:
        with self.metrics.timer("encode_s"):
            msg = serde.encode_activation(act, self.wire[0])
        self._call("Forward", self._forward, msg, serde.raw_nbytes(act))

    def backward(self, grad: Gradient) -> None:
        with self.metrics.timer("encode_s"):
            msg = serde.encode_gradient(grad, self.wire[1])
        self._call("Backward", self._backward, msg, serde.raw_nbytes(grad))

    def close(self) -> None:
        self.channel.close()


class ParameterClient:
    """Pushes weights or gradients to the parameter server and pulls the model from it."""

    def __init__(
        self,
        address: str,
        deadline_s: float,
        metrics: WorkerMetrics | None,
        uplink: pacing.TokenBucket | None = None,
        paced: bool = True,
    ) -> None:
        """`paced`: False when the server only observes (its traffic is not the link's)."""
        self.address, self.deadline_s, self.metrics = address, deadline_s, metrics
        self.uplink = uplink or (pacing.process_uplink() if paced else None)
        self.channel = grpc_util.open_channel(address)
        self.stub = parameter_pb2_grpc.ParameterServiceStub(self.channel)

    def _call(self, what: str, method: Any, msg: Any, raw: int = 0) -> Any:
        wire = serde.wire_nbytes(msg)
        pace(self.uplink, self.metrics, wire)
        try:
            deadline = pacing.transfer_deadline(self.deadline_s, wire)
            reply = grpc_util.call_with_deadline(method, msg, deadline, wait_for_ready=True)
        except grpc.RpcError as err:
            raise _rpc_error(what, "ps", self.address, err) from None
        if self.metrics is not None and raw:
            self.metrics.transfer("sent", "ps", wire, raw)
        return reply

    def push_weights(self, weights: Weights) -> None:
        self._call(
            "PushWeights",
            self.stub.PushWeights,
            serde_ps.weights_to_message(weights),
            serde.raw_nbytes(weights),
        )

    def push_gradients(self, grads: ModelWeights) -> None:
        raw = sum(serde.raw_nbytes(w) for w in grads.stages)
        self._call("PushGradients", self.stub.PushGradients, serde_ps.model_to_message(grads), raw)

    def push_state(self, stage_state: Weights) -> None:
        """A stage's full training state for a checkpoint (testbed.training.state names)."""
        self._call("PushState", self.stub.PushState, serde_ps.weights_to_message(stage_state),
                   serde.raw_nbytes(stage_state))  # fmt: skip

    def pull_state(self, stage_id: int, step: int) -> parameter_pb2.WeightSet:
        """A stage's state from the checkpoint at `step` the server loaded."""
        request = parameter_pb2.PullRequest(stage_id=stage_id, min_version=step)
        return self._call("PullState", self.stub.PullState, request)  # type: ignore[no-any-return]

    def pull_model(self) -> parameter_pb2.ModelWeights:
        t = time.perf_counter()
        reply = self._call("PullModel", self.stub.PullModel, common_pb2.Empty())
        if self.metrics is not None:
            self.metrics.add("pull_s", time.perf_counter() - t)
            raw = sum(len(n.tensor.data) for s in reply.stages for n in s.tensors)
            self.metrics.transfer("received", "ps", reply.ByteSize(), raw)
        return reply  # type: ignore[no-any-return]

    def pull_weights(self, stage_id: int, min_version: int, split_epoch: int = 0,
                     expected: Mapping[str, TensorSpec] | None = None,
                     sg_boundary: int | None = None) -> Weights | None:
        """Stage `stage_id` of a split epoch at min_version or newer, validated against
        `expected` (names, dtypes, shapes); None while the server does not hold every unit of
        it at that version yet. With `sg_boundary`: the SG module (and optimizer) a re-split
        carries at the boundary after that unit, instead of a stage."""
        request = parameter_pb2.PullRequest(stage_id=stage_id, min_version=min_version,
                                            split_epoch=split_epoch, sg_boundary=sg_boundary)
        try:
            reply = grpc_util.call_with_deadline(self.stub.PullWeights, request, self.deadline_s,
                                                 wait_for_ready=True)
        except grpc.RpcError as err:
            if err.code() == grpc.StatusCode.NOT_FOUND:  # type: ignore[attr-defined]
                return None
            raise _rpc_error("PullWeights", "ps", self.address, err) from None
        weights = serde_ps.weights_from_message(reply, expected)
        if self.metrics is not None:
            self.metrics.transfer("received", "ps", len(reply.SerializeToString()),
                                  serde.raw_nbytes(weights))
        return weights

    def resplit(self, plan: Resplit) -> None:
        self._call("Resplit", self.stub.Resplit, serde.split_to_message(plan))

    def status(self) -> ParameterStatus:
        reply = self._call("Status", self.stub.Status, common_pb2.Empty())
        return serde_ps.status_from_message(reply)

    def close(self) -> None:
        self.channel.close()
