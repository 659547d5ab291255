"""Ctrl-C during training: the first stops at the next step boundary, a second stops at once.

Stopping between steps lets the loop checkpoint a consistent state (no half-applied update,
no batch drawn but not trained on) before it raises KeyboardInterrupt, so a resumed run
loses nothing. Only the main thread can install the handler; elsewhere this is a no-op.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType


@contextlib.contextmanager
def stop_at_step_boundary() -> Iterator[threading.Event]:
    """Yield an event set by the first SIGINT; the second raises KeyboardInterrupt."""
    requested = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield requested
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if requested.is_set():
            raise KeyboardInterrupt
        requested.set()
        print("\nstopping after this step (a checkpoint is written); Ctrl-C again to stop now",
              file=sys.stderr, flush=True)  # fmt: skip

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield requested
    finally:
        signal.signal(signal.SIGINT, previous)
