"""Activation store and outbox: bounded buffers block or drop, stale targets are refused."""

from __future__ import annotations

import threading
import time

import pytest

from testbed.runtime.outbox import Outbox
from testbed.runtime.store import BoundedBuffer, PendingTargets


def test_drop_policy_keeps_the_newest_and_counts_drops() -> None:
    buf: BoundedBuffer[int] = BoundedBuffer(2, "drop")
    for i in range(5):
        assert buf.put(i, timeout=0)
    assert [buf.get(0), buf.get(0), buf.get(0)] == [3, 4, None]
    s = buf.stats()
    assert (s.put, s.taken, s.dropped, s.max_depth) == (5, 2, 3, 2)


def test_block_policy_times_out_when_full_then_accepts_after_a_get() -> None:
    buf: BoundedBuffer[int] = BoundedBuffer(1, "block")
    assert buf.put(1, timeout=0)
    t = time.monotonic()
    assert not buf.put(2, timeout=0.2)
    assert time.monotonic() - t >= 0.2
    taker = threading.Timer(0.1, buf.get)
    taker.start()
    assert buf.put(2, timeout=5)  # woken by the get, not by the timeout
    taker.join()
    assert buf.get(0) == 2 and buf.stats().dropped == 0


def test_close_wakes_a_blocked_getter_and_refuses_puts() -> None:
    buf: BoundedBuffer[int] = BoundedBuffer(1)
    got: list[int | None] = []
    getter = threading.Thread(target=lambda: got.append(buf.get()))
    getter.start()
    buf.close()
    getter.join(timeout=5)
    assert got == [None] and not buf.put(1, timeout=0)


@pytest.mark.parametrize(("capacity", "policy"), [(0, "block"), (1, "newest")])
def test_bad_buffer_settings_are_named(capacity: int, policy: str) -> None:
    with pytest.raises(ValueError, match="buffer"):
        BoundedBuffer(capacity, policy)  # type: ignore[arg-type]


def test_pending_targets_match_expire_and_refuse_stale() -> None:
    pending: PendingTargets[str] = PendingTargets(limit=2)
    for step in (1, 2, 3):
        pending.add(batch_id=step, step=step, value=f"h{step}")
    assert pending.expired == 1 and len(pending) == 2  # batch 1 expired
    assert pending.match(1, now_step=3) is None  # expired: counted as stale
    assert pending.match(2, now_step=3) == (1, "h2")
    assert pending.match(3, now_step=6) is None  # 3 steps old > limit 2
    assert (pending.matched, pending.stale) == (1, 2)


def test_outbox_sends_in_order_and_applies_backpressure() -> None:
    sent: list[int] = []
    gate = threading.Event()

    def send(item: int) -> None:
        gate.wait(5)
        sent.append(item)

    box: Outbox[int] = Outbox("peer", send, capacity=1)
    box.put(0)  # taken by the sender, which waits at the gate
    box.put(1)  # fills the queue
    threading.Timer(0.2, gate.set).start()
    waited = box.put(2)  # must wait until the sender makes room
    assert waited >= 0.1
    box.close(timeout=5)
    assert sent == [0, 1, 2]


def test_outbox_reraises_a_failed_send_on_the_next_put() -> None:
    def send(item: int) -> None:
        raise ConnectionError(f"peer gone while sending {item}")

    box: Outbox[int] = Outbox("peer", send, capacity=4)
    box.put(1)
    with pytest.raises(ConnectionError, match="peer gone while sending 1"):
        box.flush(timeout=5)
    with pytest.raises(ConnectionError):
        box.put(2)
