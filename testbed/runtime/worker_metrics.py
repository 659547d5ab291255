"""A worker's own metrics: step rate, compute and blocked time, bytes per peer, staleness."""

from __future__ import annotations

import collections
import json
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from testbed.runtime.thread_cpu import thread_cpu_s

_GRPC_PREFIX = 5  # compressed flag + 4-byte length before every message
_HTTP2_FRAME = 16384
_HTTP2_HEADER = 9


def framed_nbytes(message_bytes: int) -> int:
    """Bytes a message occupies on the wire: gRPC prefix plus HTTP/2 DATA frame headers."""
    body = message_bytes + _GRPC_PREFIX
    return body + _HTTP2_HEADER * max(1, math.ceil(body / _HTTP2_FRAME))


class WorkerMetrics:
    """Thread-safe counters, written as JSON lines to the worker's metrics file (flushed each line).

    Lines are {"kind", "time_ns", "tags", "fields"}; the controller tails them into the run.
    """

    def __init__(
        self, path: Path, tags: dict[str, str], t0: float, warmup: int, batch: int = 0
    ) -> None:
        self.tags, self.t0, self.warmup, self.batch = tags, t0, warmup, batch
        self._file = open(path, "a", buffering=1)  # noqa: SIM115 - closed in close()
        self._lock = threading.Lock()
        self.totals: collections.defaultdict[str, float] = collections.defaultdict(float)
        self.peers: dict[tuple[str, str], collections.Counter[str]] = {}
        self.step = 0
        self._window = (time.perf_counter(), 0)
        self._steady: tuple[float, dict[str, float]] | None = None
        self._last_step_t = self._last_cpu = self._warm_cpu = 0.0
        self._warm_threads: dict[str, float] = {}
        self._end_threads: dict[str, float] | None = None
        self.gauges: dict[str, Callable[[], float]] = {}
        self.snapshots: dict[int, float] = {}  # weights version -> wall_s when it was taken

    def add(self, name: str, value: float = 1.0) -> None:
        with self._lock:
            self.totals[name] += value

    @contextmanager
    def timer(self, name: str) -> Iterator[None]:
        t = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - t)

    def transfer(self, direction: str, peer: str, wire: int, raw: int) -> None:
        """Count one message sent to / received from peer (direction 'sent' or 'received')."""
        with self._lock:
            c = self.peers.setdefault((direction, peer), collections.Counter())
            c["messages"] += 1
            c["wire_bytes"] += framed_nbytes(wire)
            c["message_bytes"] += wire
            c["raw_bytes"] += raw

    def snapshot(self, version: int) -> None:
        """Note when this worker's weights of `version` existed (the run's time to accuracy)."""
        with self._lock:
            self.snapshots.setdefault(version, time.time() - self.t0)

    def staleness(self, steps: int) -> None:
        with self._lock:
            self.totals["staleness_sum"] += steps
            self.totals["staleness_n"] += 1
            self.totals["staleness_max"] = max(self.totals["staleness_max"], steps)

    def write(
        self, kind: str, fields: dict[str, float], tags: dict[str, str] | None = None
    ) -> None:
        rec = {
            "kind": kind,
            "time_ns": time.time_ns(),
            "tags": {**self.tags, **(tags or {})},
            "fields": fields,
        }
        with self._lock:
            if not self._file.closed:
                self._file.write(json.dumps(rec) + "\n")

    def train_point(
        self, step: int, fields: dict[str, float], tags: dict[str, str] | None = None
    ) -> None:
        """The run-level 'train' record (loss, batch accuracy, it/s) of a loss-holding worker."""
        self.write("train", {"step": step, "wall_s": time.time() - self.t0, **fields}, tags)

    def step_done(self, step: int, log_every: int, **extra: float) -> dict[str, float] | None:
        """Mark a completed optimizer step; every log_every steps write (and return) a point."""
        now, cpu = time.perf_counter(), time.process_time()
        with self._lock:
            self.step, self._last_step_t, self._last_cpu = step, now, cpu
            if step == self.warmup:
                self._steady, self._warm_cpu = (now, dict(self.totals)), cpu
                self._warm_threads = thread_cpu_s()
        return self._log(step, now, extra) if step % log_every == 0 else None

    def _log(self, step: int, now: float, extra: dict[str, float]) -> dict[str, float]:
        t_w, s_w = self._window
        it_s = (step - s_w) / (now - t_w) if now > t_w else 0.0
        self._window = (now, step)
        with self._lock:
            totals = dict(self.totals)
        fields = {
            "step": step,
            "it_s": it_s,
            "samples_s": it_s * self.batch,
            "wall_s": time.time() - self.t0,
            **totals,
            **extra,
        }
        fields.update({k: float(g()) for k, g in self.gauges.items()})
        self.write("worker", fields)
        for (direction, peer), c in list(self.peers.items()):
            self.write("link", {f"{direction}_{k}": v for k, v in c.items()}, {"peer": peer})
        return fields

    def steady(self) -> dict[str, Any]:
        """Per-step rates after the warm-up steps (tracing, first transfers) until the last step."""
        with self._lock:
            if self._steady is None or self.step <= self.warmup:
                return {}
            t_w, at_w = self._steady
            steps, span = self.step - self.warmup, self._last_step_t - t_w
            out: dict[str, Any] = {
                "steps": steps,
                "seconds": span,
                "it_s": steps / span if span > 0 else 0.0,
                "samples_s": self.batch * steps / span if span > 0 else 0.0,
                "process_cpu_per_step_s": (self._last_cpu - self._warm_cpu) / steps,
            }
            for k, v in self.totals.items():
                if k.endswith("_s"):
                    out[f"{k[:-2]}_per_step_s"] = (v - at_w.get(k, 0.0)) / steps
            now = self._end_threads or thread_cpu_s()
            out["thread_cpu_per_step_s"] = {
                g: (now[g] - self._warm_threads.get(g, 0.0)) / steps
                for g in sorted(now, key=now.__getitem__, reverse=True)
                if now[g] - self._warm_threads.get(g, 0.0) > 0
            }
            return out

    def training_ended(self) -> None:
        """Snapshot per-thread CPU while every thread still lives (senders stop at the flush)."""
        threads = thread_cpu_s()
        with self._lock:
            self._end_threads = threads

    def summary(self) -> dict[str, Any]:
        with self._lock:
            peers = {f"{d}:{p}": dict(c) for (d, p), c in self.peers.items()}
            totals = dict(self.totals)
        return {
            "step": self.step,
            "totals": totals,
            "peers": peers,
            "steady": self.steady(),
            "gauges": {k: float(g()) for k, g in self.gauges.items()},
            "snapshots": {str(v): t for v, t in sorted(self.snapshots.items())},
        }

    def close(self) -> None:
        with self._lock:
            self._file.close()
