"""Send without blocking compute: a bounded queue drained by one sender thread per peer."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from testbed.runtime.store import BoundedBuffer

T = TypeVar("T")


class Outbox(Generic[T]):
    """Items put here are sent in order by a background thread calling send(item).

    put() blocks only while `capacity` items are already waiting (backpressure from a slow
    peer) and returns the seconds it waited. A failed send is kept and re-raised by the next
    put() or by close(), so the compute loop stops on a broken link.
    """

    def __init__(self, name: str, send: Callable[[T], None], capacity: int) -> None:
        self.name = name
        self._send = send
        self._queue: BoundedBuffer[T] = BoundedBuffer(capacity, "block")
        self._error: BaseException | None = None
        self._idle = threading.Condition()
        self._in_flight = 0
        self._thread = threading.Thread(target=self._run, name=f"send-{name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            try:
                self._send(item)
            except BaseException as err:  # noqa: BLE001 - handed to the compute thread
                self._error = err
                self._queue.close()
            finally:
                with self._idle:
                    self._in_flight -= 1
                    self._idle.notify_all()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def put(self, item: T) -> float:
        """Queue item for sending; returns seconds spent waiting for room."""
        self._raise_if_failed()
        t = time.perf_counter()
        with self._idle:
            self._in_flight += 1
        if not self._queue.put(item):
            with self._idle:
                self._in_flight -= 1
            self._raise_if_failed()
            raise RuntimeError(f"outbox {self.name!r} is closed")
        return time.perf_counter() - t

    def depth(self) -> int:
        return self._queue.stats().depth

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued has been sent (or failed); re-raise a failure."""
        with self._idle:
            done = self._idle.wait_for(
                lambda: self._in_flight == 0 or self._error is not None, timeout
            )
        self._raise_if_failed()
        return done

    def close(self, timeout: float | None = None) -> None:
        """Send what is queued, stop the thread; re-raise a send failure."""
        self.flush(timeout)
        self._queue.close()
        self._thread.join(timeout)
        self._raise_if_failed()
