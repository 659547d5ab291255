"""The run directory: results/<experiment>/<run-id>/ with spec, metrics, events, summary, figures."""

from __future__ import annotations

import json
import math
import os
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import yaml

from testbed.metrics import provenance
from testbed.metrics.sink import Point
from testbed.paths import results_root

METRICS_FILE = "metrics.jsonl"
EVENTS_FILE = "events.jsonl"
SUMMARY_FILE = "summary.json"
SPEC_FILE = "spec.yaml"
FLUSH_EVERY_S = 1.0


def default_results_root() -> Path:
    """$TESTBED_RESULTS, else the project's results/."""
    return results_root()


def new_run_id(scale: str) -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{scale}-{secrets.token_hex(2)}"


def run_started(run_id: str) -> str:
    """'2026-11-30 15:41' from a run id made by `new_run_id` ('20261130-154145-...'); '' otherwise."""
    day, _, rest = run_id.partition("-")
    if len(day) == 8 and day.isdigit() and rest[:4].isdigit():
        return f"{day[:4]}-{day[4:6]}-{day[6:]} {rest[:2]}:{rest[2:4]}"
    return ""


def write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def point_record(point: Point) -> dict[str, Any]:
    """A point as one flat JSON object: kind, t (seconds), tags, fields."""
    return {"kind": point.kind, "t": point.time_ns / 1e9, **point.tags, **point.fields}


class RunDir:
    """Writes one run's records; the metrics stream is also a `Sink` of points."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.run_id = path.name
        path.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()  # the metrics tail and the controller both write
        self._metrics: TextIO = open(path / METRICS_FILE, "a", buffering=1 << 16)
        self._events: TextIO = open(path / EVENTS_FILE, "a", buffering=1)
        self.points = 0
        self._flushed_at = time.monotonic()

    @classmethod
    def create(cls, experiment: str, scale: str, root: Path | None = None) -> RunDir:
        root = root or default_results_root()
        return cls(root / experiment / new_run_id(scale))

    def write_spec(self, spec: dict[str, Any]) -> None:
        (self.path / SPEC_FILE).write_text(yaml.safe_dump(spec, sort_keys=False))

    def write(self, point: Point) -> None:
        line = json.dumps(point_record(point)) + "\n"
        with self._lock:
            self._metrics.write(line)
            self.points += 1
            if time.monotonic() - self._flushed_at > FLUSH_EVERY_S:  # live readers see < 1 s lag
                self.flush()

    def flush(self) -> None:
        with self._lock:
            self._metrics.flush()
            self._flushed_at = time.monotonic()

    def rewind(self, step: int) -> int:
        """Drop the metric records past `step` (and a torn last line): the work a resumed run
        does again. Rewrites metrics.jsonl atomically; returns how many records went."""
        with self._lock:
            return self._rewind(step)

    def _rewind(self, step: int) -> int:
        self._metrics.close()
        path = self.path / METRICS_FILE
        kept, dropped = [], 0
        for line in path.read_text().splitlines(keepends=True):
            if _record_step(line) <= step:
                kept.append(line)
            else:
                dropped += 1
        if dropped:
            tmp = path.with_suffix(".jsonl.tmp")
            tmp.write_text("".join(kept))
            os.replace(tmp, path)
        self._metrics = open(path, "a", buffering=1 << 16)
        return dropped

    def event(self, kind: str, **fields: Any) -> None:
        self._events.write(json.dumps({"event": kind, "t": time.time(), **fields}) + "\n")

    def write_summary(self, summary: dict[str, Any]) -> None:
        """summary.json, every machine path in it made relative to the project (or ~)."""
        write_json_atomic(self.path / SUMMARY_FILE, provenance.portable(summary))

    def close(self) -> dict[str, int]:
        for f in (self._metrics, self._events):
            if not f.closed:
                f.close()
        return {"written": self.points}


def _record_step(line: str) -> float:
    """A metric line's step (0 without one); infinity for a line that is not a record."""
    try:
        rec = json.loads(line)
        return float(rec.get("step", 0)) if line.endswith("\n") else math.inf
    except (ValueError, AttributeError, TypeError):
        return math.inf


def read_metrics(run_path: Path, kind: str | None = None) -> Iterator[dict[str, Any]]:
    """The run's metric records in order, optionally of one kind."""
    with open(run_path / METRICS_FILE) as f:
        for line in f:
            if line.strip():
                rec = json.loads(line)
                if kind is None or rec["kind"] == kind:
                    yield rec


def read_summary(run_path: Path) -> dict[str, Any]:
    return json.loads((run_path / SUMMARY_FILE).read_text())


def find_runs(root: Path | None = None, experiment: str | None = None) -> list[Path]:
    """Run directories that have a summary, oldest first."""
    root = root or default_results_root()
    pattern = f"{experiment}/*/{SUMMARY_FILE}" if experiment else f"*/*/{SUMMARY_FILE}"
    return sorted((p.parent for p in root.glob(pattern)), key=lambda p: p.name)


def latest_run(experiment: str, root: Path | None = None) -> Path | None:
    runs = find_runs(root, experiment)
    return runs[-1] if runs else None
