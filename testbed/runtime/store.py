"""The activation store: bounded buffers between stages (block or drop when full) and SG targets."""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

T = TypeVar("T")
OnFull = Literal["block", "drop"]


@dataclass(frozen=True)
class BufferStats:
    """Counters of one buffer since it was created."""

    depth: int
    max_depth: int
    put: int
    taken: int
    dropped: int
    blocked_put_s: float


class BoundedBuffer(Generic[T]):
    """FIFO of at most `capacity` items; when full, put blocks (backpressure) or drops oldest."""

    def __init__(self, capacity: int, on_full: OnFull = "block") -> None:
        if capacity < 1:
            raise ValueError(f"buffer capacity: got {capacity}, expected at least 1")
        if on_full not in ("block", "drop"):
            raise ValueError(f"buffer on_full: got {on_full!r}, expected 'block' or 'drop'")
        self.capacity, self.on_full = capacity, on_full
        self._items: collections.deque[T] = collections.deque()
        self._cond = threading.Condition()
        self._closed = False
        self._put = self._taken = self._dropped = self._max_depth = 0
        self._blocked_s = 0.0

    def put(self, item: T, timeout: float | None = None) -> bool:
        """Add item; False if it stayed full for `timeout` seconds (block) or the buffer closed."""
        with self._cond:
            if len(self._items) >= self.capacity and self.on_full == "drop":
                self._items.popleft()
                self._dropped += 1
            t0 = time.perf_counter()
            fits = self._cond.wait_for(
                lambda: self._closed or len(self._items) < self.capacity, timeout
            )
            self._blocked_s += time.perf_counter() - t0
            if not fits or self._closed:
                return False
            self._items.append(item)
            self._put += 1
            self._max_depth = max(self._max_depth, len(self._items))
            self._cond.notify_all()
            return True

    def get(self, timeout: float | None = None) -> T | None:
        """The oldest item, waiting up to timeout; None on timeout or when closed and empty."""
        with self._cond:
            self._cond.wait_for(lambda: self._closed or bool(self._items), timeout)
            if not self._items:
                return None
            self._taken += 1
            item = self._items.popleft()
            self._cond.notify_all()
            return item

    def drain(self) -> list[T]:
        """Everything buffered now, without waiting."""
        with self._cond:
            items = list(self._items)
            self._items.clear()
            self._taken += len(items)
            self._cond.notify_all()
            return items

    def close(self) -> None:
        """Wake every waiter; later puts fail and gets return what is left, then None."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def stats(self) -> BufferStats:
        with self._cond:
            return BufferStats(
                len(self._items),
                self._max_depth,
                self._put,
                self._taken,
                self._dropped,
                self._blocked_s,
            )


@dataclass(frozen=True)
class Pending(Generic[T]):
    """What a stage keeps of a batch until its SG target comes back."""

    step: int
    value: T


class PendingTargets(Generic[T]):
    """Batches awaiting their SG target: at most `limit` (oldest expire); stale targets are refused.

    Single-threaded (the compute loop); match() returns the kept value for a target, or None when
    the batch expired or the target is older than `limit` steps (counted as stale).
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"target staleness limit: got {limit}, expected at least 1")
        self.limit = limit
        self._items: collections.OrderedDict[int, Pending[T]] = collections.OrderedDict()
        self.expired = self.stale = self.matched = 0

    def add(self, batch_id: int, step: int, value: T) -> None:
        self._items[batch_id] = Pending(step, value)
        while len(self._items) > self.limit:
            self._items.popitem(last=False)
            self.expired += 1

    def match(self, batch_id: int, now_step: int) -> tuple[int, T] | None:
        """(staleness in steps, kept value) for a target, or None if it cannot be used."""
        kept = self._items.pop(batch_id, None)
        if kept is None or now_step - kept.step > self.limit:
            self.stale += 1
            return None
        self.matched += 1
        return now_step - kept.step, kept.value

    def clear(self) -> None:
        """Forget every batch still waiting (a re-split: their targets will not come)."""
        self.expired += len(self._items)
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)
