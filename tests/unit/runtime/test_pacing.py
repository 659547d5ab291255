"""Fast tier: the uplink token bucket (fake clock), its environment hook, and real paced gRPC."""

from __future__ import annotations

import functools
import math
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from testbed.emulation.local import fallback
from testbed.runtime import pacing
from testbed.runtime.pacing import TokenBucket, default_burst_bytes, process_uplink, rate_from_env
from testbed.runtime.peers import StagePeer
from testbed.runtime.stage_service import StageNode, StageServicer, register_servicer
from testbed.runtime.store import BoundedBuffer
from testbed.runtime.wire import grpc_util, serde
from testbed.runtime.wire.serde import Activation
from testbed.runtime.wire.tensors import TensorSpec
from testbed.runtime.worker_metrics import WorkerMetrics, framed_nbytes

MBIT = 10**6


class FakeClock:
    """time.monotonic and time.sleep for a bucket: sleeping advances the clock exactly."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.now += seconds


def _bucket(rate_bps: float, burst: int | None = None) -> tuple[TokenBucket, FakeClock]:
    clock = FakeClock()
    return TokenBucket(rate_bps, burst, clock=clock, sleep=clock.sleep), clock


def test_rate_is_respected_over_many_messages_of_mixed_sizes() -> None:
    bucket, clock = _bucket(8 * MBIT)
    sizes = np.random.default_rng(0).integers(100, 300_000, size=500)
    start = clock.now
    for n in sizes:
        bucket.consume(int(n))
    achieved = (int(sizes.sum()) - bucket.burst_bytes) * 8 / (clock.now - start)
    assert achieved == pytest.approx(8 * MBIT, rel=0.01)
    assert int(sizes.sum()) * 8 / (clock.now - start) == pytest.approx(8 * MBIT, rel=0.01)


def test_a_full_bucket_sends_its_burst_at_once_then_waits() -> None:
    bucket, clock = _bucket(8 * MBIT, burst=50_000)  # 1 byte per microsecond
    assert bucket.consume(50_000) == 0.0
    assert bucket.consume(1_000) == pytest.approx(1e-3)
    clock.now += 3600  # an idle hour refills only up to the burst
    assert bucket.consume(50_000) == 0.0
    assert bucket.consume(10_000) == pytest.approx(10e-3)


def test_a_message_larger_than_the_burst_waits_in_proportion() -> None:
    bucket, _ = _bucket(8 * MBIT, burst=50_000)
    assert bucket.consume(50_000 + 2_000_000) == pytest.approx(2.0)
    assert bucket.consume(0) == 0.0  # the debt was paid by that wait


def test_concurrent_reservations_queue_without_losing_updates() -> None:
    bucket, clock = _bucket(8 * MBIT, burst=1_000)  # frozen clock: waits only add up
    waits: list[float] = []
    lock = threading.Lock()

    def sender() -> None:
        for _ in range(200):
            wait = bucket.reserve(1_000)
            with lock:
                waits.append(wait)

    threads = [threading.Thread(target=sender) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(waits) == 1600
    assert sorted(waits) == pytest.approx([i * 1e-3 for i in range(1600)])


@pytest.mark.parametrize("rate", [0, -8_000_000, math.nan])
def test_a_rate_that_is_not_positive_is_rejected_naming_it(rate: float) -> None:
    with pytest.raises(ValueError, match=rf"pacing rate {rate!r} bit/s is not positive"):
        TokenBucket(rate)


def test_bad_burst_and_sizes_are_rejected_naming_them() -> None:
    with pytest.raises(ValueError, match=r"burst 0 bytes is not positive"):
        TokenBucket(MBIT, burst_bytes=0)
    with pytest.raises(ValueError, match=r"message size -1 bytes is negative"):
        TokenBucket(MBIT).consume(-1)


def test_default_burst_follows_the_tc_rule() -> None:
    assert default_burst_bytes(10**9) == 10**9 // 8 // 100  # rate/HZ: 1.25 MB at 1 Gbit
    assert default_burst_bytes(8 * MBIT) == 32 * 1024  # the floor
    assert TokenBucket(10**9).burst_bytes == 1_250_000


def test_rate_comes_from_the_variable_the_fallback_sets(monkeypatch) -> None:
    assert pacing.UPLINK_RATE_ENV == fallback.UPLINK_RATE_ENV
    assert rate_from_env({}) is None
    assert rate_from_env({pacing.UPLINK_RATE_ENV: " "}) is None
    assert rate_from_env({pacing.UPLINK_RATE_ENV: "10000000"}) == 10**7
    with pytest.raises(ValueError, match=r"TESTBED_UPLINK_RATE_BPS='10mbit' is not a number"):
        rate_from_env({pacing.UPLINK_RATE_ENV: "10mbit"})
    with pytest.raises(ValueError, match=r"pacing rate 0.0 bit/s is not positive"):
        rate_from_env({pacing.UPLINK_RATE_ENV: "0"})
    monkeypatch.setenv(pacing.UPLINK_RATE_ENV, "5000000")
    process_uplink.cache_clear()
    try:
        bucket = process_uplink()
        assert bucket is not None and bucket.rate_bps == 5 * MBIT
        assert process_uplink() is bucket  # one bucket shared by the process's senders
    finally:
        process_uplink.cache_clear()


# --- real gRPC: a StagePeer paced against an in-process StageService ------------------------

H = TensorSpec("float32", (None, 14, 14, 32))


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[StageNode, str]]:
    metrics = WorkerMetrics(tmp_path / "s.metrics.jsonl", {"worker": "s"}, 0.0, warmup=1)
    node = StageNode("stage", (1,), metrics, H, None, BoundedBuffer(32, "block"), None)
    register = functools.partial(register_servicer, StageServicer(node))
    with grpc_util.start_server(register) as server:
        yield node, server.address
    metrics.close()


def test_a_paced_stage_peer_sends_at_the_configured_rate(served, tmp_path) -> None:
    node, address = served
    rate = 8 * MBIT
    metrics = WorkerMetrics(tmp_path / "c.metrics.jsonl", {"worker": "c"}, 0.0, warmup=1)
    peer = StagePeer("downstream", address, 30.0, metrics, uplink=TokenBucket(rate))
    acts = [
        Activation(i, i, np.full((8, 14, 14, 32), i, np.float32), np.arange(8, dtype=np.int64))
        for i in range(10)
    ]
    sizes = [framed_nbytes(len(serde.encode_activation(a))) for a in acts]
    assert sum(sizes) > 2_000_000
    start = time.perf_counter()
    for act in acts:
        peer.forward(act)
    elapsed = time.perf_counter() - start
    peer.close()
    ratio = sum(sizes) * 8 / elapsed / rate
    print(f"paced StagePeer: {sum(sizes)} B in {elapsed:.3f} s, achieved/configured {ratio:.3f}")
    assert 0.9 <= ratio <= 1.1
    assert [node.inputs.get(timeout=5).batch_id for _ in acts] == list(range(10))
    assert metrics.summary()["totals"]["paced_s"] == pytest.approx(elapsed, rel=0.1)
    metrics.close()


def test_deadline_grows_with_the_payload_on_a_slow_link(monkeypatch: pytest.MonkeyPatch) -> None:
    ten_mbit = pacing.transfer_deadline(30.0, 12_800_000, rate_bps=10e6)
    assert ten_mbit == pytest.approx(30.0 + 4 * 10.24)  # 12.8 MB needs 10.24 s at 10 Mbit
    assert pacing.transfer_deadline(30.0, 12_800_000, rate_bps=1e9) == pytest.approx(30.4096)
    try:
        monkeypatch.delenv(pacing.LINK_RATE_ENV, raising=False)
        pacing.link_rate_bps.cache_clear()
        assert pacing.transfer_deadline(30.0, 12_800_000) == 30.0  # unshaped: the base
        monkeypatch.setenv(pacing.LINK_RATE_ENV, "10000000")  # what the backends set
        pacing.link_rate_bps.cache_clear()
        assert pacing.transfer_deadline(30.0, 12_800_000) == pytest.approx(ten_mbit)
    finally:
        pacing.link_rate_bps.cache_clear()
