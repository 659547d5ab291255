"""Carry out a cluster's link schedule during a run: a thread applying entries at their times."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from testbed.emulation.config import ScheduleEntry


class LinkSchedule:
    """Applies each entry at `at_s` seconds after `start()` (the start of training).

    `apply(entry)` changes the link (the cluster handle's `apply`); `report(name, **fields)`
    records what happened (the run's event log). An entry that fails is reported, not retried.
    """

    def __init__(
        self,
        entries: list[ScheduleEntry],
        apply: Callable[[ScheduleEntry], Any],
        report: Callable[..., None],
    ) -> None:
        self.entries = sorted(entries, key=lambda e: e.at_s)
        self._apply, self._report = apply, report
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.applied: list[dict[str, Any]] = []
        self.listeners: list[Callable[[ScheduleEntry], None]] = []  # told of each applied entry

    def start(self) -> None:
        if self.entries and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="link-schedule", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        t0 = time.monotonic()
        for entry in self.entries:
            if self._stop.wait(max(0.0, t0 + entry.at_s - time.monotonic())):
                return
            self._fire(entry, time.monotonic() - t0)

    def _fire(self, entry: ScheduleEntry, at: float) -> None:
        record: dict[str, Any] = {"link": entry.label, "at_s": entry.at_s, "applied_at_s": at}
        if entry.cpus is not None:
            record["cpus"] = entry.cpus
        try:
            record["settings"] = self._apply(entry).settings()
            self._report("link_changed", **record)
        except Exception as err:  # a failed change must not kill the run silently: log it
            record["error"] = f"{type(err).__name__}: {err}"
            self._report("link_change_failed", **record)
        self.applied.append(record)
        if "error" not in record:
            for listener in self.listeners:
                listener(entry)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10.0)

    def __enter__(self) -> LinkSchedule:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
