"""A real StageService on port 0: validation, backpressure, control, and bytes counted per peer."""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from testbed.algorithms.wire_codec import Codec, round_trip
from testbed.runtime.peers import PeerError, StagePeer
from testbed.runtime.stage_service import (
    StageNode,
    StageServicer,
    node_stats,
    register_servicer,
)
from testbed.runtime.store import BoundedBuffer
from testbed.runtime.wire import grpc_util, serde
from testbed.runtime.wire.proto import common_pb2, stage_pb2_grpc
from testbed.runtime.wire.serde import Activation, Gradient, Start, Stop
from testbed.runtime.wire.tensors import TensorSpec
from testbed.runtime.worker_metrics import WorkerMetrics, framed_nbytes

H = TensorSpec("float32", (None, 14, 14, 32))
G = TensorSpec("float32", (None, 256))


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[StageNode, str, WorkerMetrics]]:
    metrics = WorkerMetrics(tmp_path / "w.metrics.jsonl", {"worker": "w"}, 0.0, warmup=1)
    node = StageNode(
        "stage", (1,), metrics, H, G, BoundedBuffer(2, "block"), BoundedBuffer(4, "drop")
    )
    register = functools.partial(register_servicer, StageServicer(node))
    with grpc_util.start_server(register) as server:
        yield node, server.address, metrics
    metrics.close()


def _client_metrics(tmp_path: Path) -> WorkerMetrics:
    return WorkerMetrics(tmp_path / "c.metrics.jsonl", {"worker": "c"}, 0.0, warmup=1)


def _act(batch_id: int, batch: int = 8, shape: tuple[int, ...] = (14, 14, 32)) -> Activation:
    h = np.random.default_rng(batch_id).random((batch, *shape), dtype=np.float32)
    return Activation(batch_id, batch_id, h, np.arange(batch, dtype=np.int64))


def test_forward_lands_in_the_store_and_bytes_are_counted_both_ends(served, tmp_path) -> None:
    node, address, metrics = served
    client = _client_metrics(tmp_path)
    peer = StagePeer("downstream", address, 10.0, client)
    act = _act(1, batch=256)
    peer.forward(act)
    got = node.inputs.get(timeout=5)
    assert (
        got.batch_id == 1
        and np.array_equal(got.h, act.h)
        and np.array_equal(got.labels, act.labels)
    )
    sent = client.summary()["peers"]["sent:downstream"]
    received = metrics.summary()["peers"]["received:upstream"]
    assert sent["raw_bytes"] == received["raw_bytes"] == serde.raw_nbytes(act)
    assert sent["message_bytes"] == received["message_bytes"]
    assert sent["raw_bytes"] < sent["wire_bytes"] <= 1.02 * sent["raw_bytes"]
    assert node_stats(node).forward_received == 1
    peer.close()
    client.close()


@pytest.mark.parametrize(
    ("act", "detail"),
    [
        (_act(2, shape=(14, 14, 16)), r"activations\.shape: got \(8, 14, 14, 16\)"),
        (
            Activation(3, 3, np.zeros((8, 14, 14, 32), np.float16), np.zeros(8, np.int64)),
            r"activations\.dtype: got 'float16', expected 'float32'",
        ),
        (
            Activation(4, 4, np.zeros((8, 14, 14, 32), np.float32), np.zeros(8, np.int32)),
            r"labels\.dtype: got 'int32', expected 'int64'",
        ),
    ],
)
def test_bad_activation_is_rejected_and_the_worker_carries_on(
    served, tmp_path, act, detail
) -> None:
    node, address, _ = served
    peer = StagePeer("downstream", address, 10.0, _client_metrics(tmp_path))
    with pytest.raises(PeerError, match=f"INVALID_ARGUMENT: .*{detail}"):
        peer.forward(act)
    peer.forward(_act(5))
    assert node.inputs.get(timeout=5).batch_id == 5
    assert node.metrics.totals["invalid_received"] == 1
    peer.close()


def test_bytes_that_do_not_parse_are_invalid_argument_and_the_worker_carries_on(
    served, tmp_path
) -> None:
    node, address, _ = served
    with grpc_util.open_channel(address) as channel:
        forward = channel.unary_unary("/testbed.v1.StageService/Forward")
        with pytest.raises(grpc.RpcError) as err:
            grpc_util.call_with_deadline(forward, b"\x1a\xff\x01", deadline_s=5.0)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "ActivationBatch: 3 bytes that do not parse" in err.value.details()
    peer = StagePeer("downstream", address, 10.0, _client_metrics(tmp_path))
    peer.forward(_act(6))
    assert node.inputs.get(timeout=5).batch_id == 6
    assert node.metrics.totals["invalid_received"] == 1
    peer.close()


def test_oversized_tensor_is_rejected(served, tmp_path) -> None:
    node, address, _ = served
    node.max_tensor_bytes = 1024
    peer = StagePeer("downstream", address, 10.0, _client_metrics(tmp_path))
    with pytest.raises(PeerError, match="exceeds the limit of 1024 bytes"):
        peer.forward(_act(1))
    peer.close()


def test_full_store_answers_resource_exhausted_after_the_deadline(served) -> None:
    node, address, _ = served
    for i in range(2):
        node.inputs.put(_act(i), timeout=0)
    with grpc_util.open_channel(address) as channel:
        stub = stage_pb2_grpc.StageServiceStub(channel)
        msg = serde.activation_to_message(_act(9))
        with pytest.raises(grpc.RpcError) as err:
            grpc_util.call_with_deadline(stub.Forward, msg, deadline_s=1.0)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_gradient_to_a_node_without_downstream_is_refused(served, tmp_path) -> None:
    node, address, _ = served
    node.grads, node.grad_spec = None, None
    peer = StagePeer("upstream", address, 10.0, _client_metrics(tmp_path))
    with pytest.raises(PeerError, match="FAILED_PRECONDITION"):
        peer.backward(Gradient(1, 1, np.zeros((8, 256), np.float32)))
    peer.close()


def test_control_start_stop_and_health(served) -> None:
    node, address, _ = served
    with grpc_util.open_channel(address) as channel:
        stub = stage_pb2_grpc.StageServiceStub(channel)
        start = Start("run", "sg", 10, 8, 0.1, 0, {"upstream": "127.0.0.1:1", "ps": "127.0.0.1:2"})
        grpc_util.call_with_deadline(stub.Control, serde.control_to_message(start))
        assert node.started.is_set() and node.start.peers["ps"] == "127.0.0.1:2"
        node.step, node.done = 7, True
        health = serde.health_from_message(
            grpc_util.call_with_deadline(stub.Health, common_pb2.Empty())
        )
        assert (health.role, health.stage_ids, health.step, health.done) == ("stage", (1,), 7, True)
        grpc_util.call_with_deadline(stub.Control, serde.control_to_message(Stop("done")))
        assert node.stopped.is_set()


def test_metric_lines_carry_worker_tags_and_link_points(tmp_path) -> None:
    m = WorkerMetrics(tmp_path / "m.jsonl", {"worker": "w"}, 0.0, warmup=1, batch=32)
    m.transfer("sent", "downstream", 1000, 990)
    with m.timer("compute_s"):
        pass
    m.step_done(1, log_every=1)
    m.step_done(2, log_every=1)
    m.close()
    recs = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    kinds = [(r["kind"], r["tags"]) for r in recs]
    assert ("worker", {"worker": "w"}) in kinds
    assert ("link", {"worker": "w", "peer": "downstream"}) in kinds
    link = next(r for r in recs if r["kind"] == "link")
    assert link["fields"]["sent_wire_bytes"] == framed_nbytes(1000) > 1000
    steady = m.summary()["steady"]
    assert steady["steps"] == 1 and steady["samples_s"] == pytest.approx(32 * steady["it_s"])
    worker = next(r for r in recs if r["kind"] == "worker")
    assert worker["fields"]["samples_s"] == pytest.approx(32 * worker["fields"]["it_s"])


INT8 = Codec("int8", "per-channel")
FP16_TOPK = Codec("fp16", topk=0.1)


@pytest.fixture
def compressed(tmp_path: Path) -> Iterator[tuple[StageNode, str]]:
    """A node that expects int8 activations and fp16 top-k gradients (job.wire)."""
    metrics = WorkerMetrics(tmp_path / "z.metrics.jsonl", {"worker": "z"}, 0.0, warmup=1)
    node = StageNode("stage", (1,), metrics, dataclasses.replace(H, codec=INT8),
                     dataclasses.replace(G, codec=FP16_TOPK), BoundedBuffer(2, "block"),
                     BoundedBuffer(4, "drop"))
    with grpc_util.start_server(functools.partial(register_servicer, StageServicer(node))) as s:
        yield node, s.address
    metrics.close()


def _send_raw(address: str, method: str, wire: bytes) -> grpc.RpcError:
    with grpc_util.open_channel(address) as channel:
        call = channel.unary_unary(f"/testbed.v1.StageService/{method}")
        with pytest.raises(grpc.RpcError) as err:
            grpc_util.call_with_deadline(call, wire, deadline_s=5.0)
    return err.value


@pytest.mark.parametrize(
    ("tamper", "detail"),
    [
        (lambda t: setattr(t.compression, "scale", t.compression.scale[:-4]),
         r"activations\.compression\.scale: got 124 bytes, expected 128"),
        (lambda t: setattr(t.compression, "scale", np.float32(np.inf).tobytes() * 32),
         r"activations\.compression\.scale: got inf"),
        (lambda t: setattr(t, "data", t.data[:-1]),
         r"activations\.data: got 50175 bytes, expected 50176"),
    ],
)
def test_compressed_message_with_wrong_scale_or_size_is_invalid_and_the_worker_carries_on(
    compressed, tmp_path, tamper, detail
) -> None:
    node, address = compressed
    msg = serde.activation_to_message(_act(1), INT8)
    tamper(msg.activations)
    err = _send_raw(address, "Forward", msg.SerializeToString())
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert re.search(detail, err.details())
    assert node.metrics.totals["invalid_received"] == 1
    client = _client_metrics(tmp_path)
    peer = StagePeer("downstream", address, 10.0, client, wire=(INT8, FP16_TOPK))
    act = _act(2)
    peer.forward(act)
    got = node.inputs.get(timeout=5)
    assert got.batch_id == 2 and np.array_equal(got.h, round_trip(act.h, INT8))
    sent = client.summary()["peers"]["sent:downstream"]
    assert sent["raw_bytes"] == serde.raw_nbytes(act) > 3.9 * sent["message_bytes"]
    peer.close()


def test_compressed_gradient_lands_decoded_and_a_raw_one_is_refused(compressed, tmp_path) -> None:
    node, address = compressed
    g = np.random.default_rng(0).standard_normal((8, 256)).astype(np.float32)
    plain = StagePeer("upstream", address, 10.0, _client_metrics(tmp_path))
    with pytest.raises(PeerError, match="INVALID_ARGUMENT: .*got raw float32 data, expected "
                                        "fp16 top-0.1 codes"):
        plain.backward(Gradient(1, 1, g))
    peer = StagePeer("upstream", address, 10.0, _client_metrics(tmp_path), wire=(INT8, FP16_TOPK))
    peer.backward(Gradient(2, 2, g))
    got = node.grads.get(timeout=5)
    np.testing.assert_array_equal(got.g, round_trip(g, FP16_TOPK))
    assert np.count_nonzero(got.g) == FP16_TOPK.kept(g.size)
    plain.close()
    peer.close()
