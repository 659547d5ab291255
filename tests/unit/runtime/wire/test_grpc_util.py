"""A real in-process StageService: bad tensors get INVALID_ARGUMENT, the server keeps serving."""

from __future__ import annotations

import functools
from collections.abc import Iterator

import grpc
import numpy as np
import pytest

from testbed.runtime.wire import grpc_util, serde, tensors
from testbed.runtime.wire.proto import common_pb2, stage_pb2, stage_pb2_grpc
from testbed.runtime.wire.serde import Activation
from testbed.runtime.wire.tensors import TensorSpec

H_SPEC = TensorSpec("float32", (None, 4, 4, 2))
LABELS_SPEC = TensorSpec("int64", (None,))
MAX_TENSOR_BYTES = 4096


class ValidatingStage(stage_pb2_grpc.StageServiceServicer):
    """Accepts Forward calls whose tensors match the specs; records what it accepted."""

    def __init__(self) -> None:
        self.accepted: list[int] = []

    @grpc_util.invalid_argument_on(tensors.MessageValidationError)
    def Forward(  # noqa: N802 - name fixed by the generated servicer
        self, request: stage_pb2.ActivationBatch, context: grpc.ServicerContext
    ) -> common_pb2.Ack:
        act = serde.activation_from_message(request, H_SPEC, LABELS_SPEC, MAX_TENSOR_BYTES)
        self.accepted.append(act.batch_id)
        return common_pb2.Ack(id=act.batch_id)


@pytest.fixture
def stage() -> Iterator[tuple[ValidatingStage, stage_pb2_grpc.StageServiceStub]]:
    servicer = ValidatingStage()
    limit = grpc_util.message_size_limit(MAX_TENSOR_BYTES * 4)
    register = functools.partial(stage_pb2_grpc.add_StageServiceServicer_to_server, servicer)
    with grpc_util.start_server(register, max_message_bytes=limit) as running:
        assert running.port > 0 and running.address == f"127.0.0.1:{running.port}"
        with grpc_util.open_channel(running.address, limit) as channel:
            grpc_util.wait_ready(channel, timeout_s=10, target=running.address)
            yield servicer, stage_pb2_grpc.StageServiceStub(channel)


def _forward(stub: stage_pb2_grpc.StageServiceStub, batch_id: int, h: np.ndarray) -> int:
    labels = np.arange(h.shape[0] if h.ndim else 1, dtype=np.int64)
    msg = serde.activation_to_message(Activation(batch_id, 0, h, labels))
    ack = grpc_util.call_with_deadline(stub.Forward, msg, deadline_s=10)
    return int(ack.id)


GOOD = np.ones((3, 4, 4, 2), np.float32)


@pytest.mark.parametrize(
    ("bad", "detail"),
    [
        (np.ones((3, 4, 5, 2), np.float32), "activations.shape: got (3, 4, 5, 2)"),
        (np.ones((3, 4, 4, 2), np.float16), "activations.dtype: got 'float16', expected 'float32'"),
        (np.ones((200, 4, 4, 2), np.float32), "exceeds the limit of 4096 bytes"),
    ],
)
def test_invalid_tensor_is_rejected_and_server_keeps_serving(
    stage: tuple[ValidatingStage, stage_pb2_grpc.StageServiceStub], bad: np.ndarray, detail: str
) -> None:
    servicer, stub = stage
    assert _forward(stub, 1, GOOD) == 1
    with pytest.raises(grpc.RpcError) as info:
        _forward(stub, 2, bad)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert detail in info.value.details()
    assert _forward(stub, 3, GOOD) == 3
    assert servicer.accepted == [1, 3]


def test_message_over_the_grpc_limit_is_resource_exhausted(
    stage: tuple[ValidatingStage, stage_pb2_grpc.StageServiceStub],
) -> None:
    _, stub = stage
    with pytest.raises(grpc.RpcError) as info:
        _forward(stub, 1, np.ones((2000, 4, 4, 2), np.float32))
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert _forward(stub, 2, GOOD) == 2


def test_unimplemented_rpc_reports_unimplemented(
    stage: tuple[ValidatingStage, stage_pb2_grpc.StageServiceStub],
) -> None:
    _, stub = stage
    with pytest.raises(grpc.RpcError) as info:
        grpc_util.call_with_deadline(stub.Health, common_pb2.Empty(), deadline_s=10)
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_call_to_a_closed_port_fails_within_the_deadline() -> None:
    with grpc_util.start_server([]) as running:
        address = running.address
    with grpc_util.open_channel(address) as channel:
        stub = stage_pb2_grpc.StageServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            grpc_util.call_with_deadline(stub.Health, common_pb2.Empty(), 0.5, wait_for_ready=True)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


@pytest.mark.parametrize("bind", ["localhost", "127.0.0.1:99999", ":0", "1.2.3.4:-1"])
def test_bad_bind_address_is_rejected(bind: str) -> None:
    with pytest.raises(ValueError, match=f"bind address: got '{bind}', expected 'host:port'"):
        grpc_util.start_server([], bind=bind)


def test_bad_deadline_and_limits_are_rejected() -> None:
    with pytest.raises(ValueError, match="deadline_s: got 0"):
        grpc_util.call_with_deadline(lambda *a, **k: None, None, 0)
    with pytest.raises(ValueError, match="max_message_bytes: got 0"):
        grpc_util.grpc_options(0)
