"""Carry out a cluster's schedule during a run: a thread applying link changes and faults at their times."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from testbed.emulation.config import ScheduleEntry


def _no_worker(entry: ScheduleEntry) -> None:
    raise RuntimeError(f"{entry.label}: no worker to inject {entry.fault!r} into")


class LinkSchedule:
    """Applies each entry at `at_s` seconds after `start()` (the start of training).

    `apply(entry)` changes a link or injects a device fault (the cluster handle's `apply`);
    `on_worker(entry)` injects a worker fault (`worker: ps`, the controller's);
    `report(name, **fields)` records what happened (the run's event log: "link_changed",
    "fault_injected", or "..._failed" with the error). An entry that fails is not retried.
    """

    def __init__(
        self,
        entries: list[ScheduleEntry],
        apply: Callable[[ScheduleEntry], Any],
        report: Callable[..., None],
        on_worker: Callable[[ScheduleEntry], Any] | None = None,
    ) -> None:
        self.entries = sorted(entries, key=lambda e: e.at_s)
        self._apply, self._report = apply, report
        self._on_worker = on_worker or _no_worker
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
        kind = "link" if entry.fault is None else "fault"
        record: dict[str, Any] = {kind: entry.label, "at_s": entry.at_s, "applied_at_s": at}
        if entry.cpus is not None:
            record["cpus"] = entry.cpus
        if entry.fault is not None:
            record["fault"] = entry.fault
        try:
            done = (self._on_worker if entry.worker is not None else self._apply)(entry)
            if entry.fault is None:
                record["settings"] = done.settings()
            elif isinstance(done, dict):
                record.update({k: v for k, v in done.items() if k not in record})
            self._report("link_changed" if entry.fault is None else "fault_injected", **record)
        except Exception as err:  # a failed change must not kill the run silently: log it
            record["error"] = f"{type(err).__name__}: {err}"
            self._report("link_change_failed" if entry.fault is None else "fault_failed", **record)
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
