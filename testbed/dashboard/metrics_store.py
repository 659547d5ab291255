"""Parsed metrics per run: columnar tables, cached by file identity, extended as the file grows."""

from __future__ import annotations

import bisect
import math
import os
import threading
from array import array
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from testbed.dashboard.parse import Batch, TagKey, batches, parse_chunk
from testbed.metrics.run_dir import METRICS_FILE

Record = dict[str, Any]
CHUNK_BYTES = 1 << 20


@dataclass
class Table:
    """Rows of one kind and one tag set: each row's line number and a float column per field."""

    kind: str
    tags: dict[str, str]
    run_tags: dict[str, str] = field(default_factory=dict)
    lines: array[int] = field(default_factory=lambda: array("q"))
    cols: dict[str, array[float]] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """The tags that tell this table apart from others of its kind, e.g. 'device=edge1'."""
        return ", ".join(f"{k}={v}" for k, v in self.tags.items()) or self.kind

    def extend(self, batch: Batch) -> None:
        """Append a batch's rows; fields missing on either side are NaN."""
        n, m = len(self.lines), len(batch.lines)
        self.lines.extend(batch.lines)
        for name, values in batch.cols.items():
            if name not in self.cols:
                self.cols[name] = array("d", [math.nan]) * n
            self.cols[name].extend(values)
        for col in self.cols.values():
            if len(col) == n:
                col.extend(array("d", [math.nan]) * m)

    def sort_from(self, start: int) -> None:
        """Order rows from `start` on by line (batches of one chunk may interleave)."""
        tail = np.asarray(self.lines[start:])
        if len(tail) < 2 or bool(np.all(tail[1:] > tail[:-1])):
            return
        order = np.argsort(tail, kind="stable")
        self.lines[start:] = array("q", tail[order].tobytes())
        for col in self.cols.values():
            col[start:] = array("d", np.asarray(col[start:])[order].tobytes())

    def column(self, name: str) -> np.ndarray | None:
        """A copy of one field as float64 (NaN where a row lacks it), or None if no row has it."""
        col = self.cols.get(name)
        return None if col is None else np.array(col, dtype=np.float64)

    def record(self, i: int) -> Record:
        out: Record = {"line": self.lines[i], "kind": self.kind, **self.run_tags, **self.tags}
        for name, col in self.cols.items():
            value = col[i]
            if not math.isnan(value):
                out[name] = int(value) if value.is_integer() and abs(value) < 2**53 else value
        return out


class RunMetrics:
    """One run's metrics.jsonl as parsed so far: tables by (kind, tags), line/bad-line counts."""

    def __init__(self, run_path: Path) -> None:
        self.file = run_path / METRICS_FILE
        self.lock = threading.RLock()
        self.memo: dict[Any, Any] = {}  # derived results (charts) valid for the current `ident`
        self._reset()

    def _reset(self) -> None:
        self.ident: tuple[int, int, int] | None = None
        self.offset = 0
        self.lines = 0
        self.bad_lines = 0
        self.tables: dict[tuple[str, TagKey], Table] = {}
        self.memo.clear()

    def refresh(self) -> RunMetrics:
        """Read the complete lines appended since the last call; start over if replaced."""
        with self.lock:
            try:
                st = os.stat(self.file)
            except FileNotFoundError:
                if self.ident is not None:
                    self._reset()
                return self
            ident = (st.st_ino, st.st_size, st.st_mtime_ns)
            if ident == self.ident:
                return self
            if self.ident is None or st.st_ino != self.ident[0] or st.st_size < self.offset:
                self._reset()
            self._read_new()
            self.ident = ident
            self.memo.clear()
        return self

    def _read_new(self) -> None:
        """Parse the complete lines after `offset`, in slices of about CHUNK_BYTES (so a big file
        does not hold the GIL in one long JSON call while other requests wait)."""
        with open(self.file, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        end = data.rfind(b"\n") + 1
        pos = 0
        while pos < end:
            cut = data.rfind(b"\n", pos, min(pos + CHUNK_BYTES, end)) + 1
            if cut <= pos:  # one line longer than a chunk
                cut = data.find(b"\n", pos) + 1
            self._ingest(data[pos:cut])
            pos = cut
        self.offset += end

    def _ingest(self, chunk: bytes) -> None:
        values = parse_chunk(chunk)
        found, bad = batches(values, self.lines)
        self.lines += len(values)
        self.bad_lines += bad
        starts: dict[tuple[str, TagKey], int] = {}
        for batch in found:
            key = (batch.kind, batch.tags)
            table = self.tables.get(key)
            if table is None:
                table = self.tables[key] = Table(batch.kind, dict(batch.tags), dict(batch.run_tags))
            starts.setdefault(key, len(table.lines))
            table.extend(batch)
        for key, start in starts.items():
            self.tables[key].sort_from(start)

    def kinds(self) -> dict[str, int]:
        """Number of records of each kind."""
        with self.lock:
            out: dict[str, int] = {}
            for (kind, _), table in self.tables.items():
                out[kind] = out.get(kind, 0) + len(table.lines)
            return out

    def tables_of(self, kind: str) -> list[Table]:
        with self.lock:
            return [t for (k, _), t in self.tables.items() if k == kind]

    def records_since(
        self, since: int, kind: str | None = None, limit: int = 10_000
    ) -> tuple[list[Record], int]:
        """Records on lines >= since (of one kind or all), at most `limit`; and the next cursor."""
        with self.lock:
            rows: list[tuple[int, Table, int]] = []
            for (k, _), table in self.tables.items():
                if kind is None or k == kind:
                    start = bisect.bisect_left(table.lines, since)
                    rows.extend((table.lines[i], table, i) for i in range(start, len(table.lines)))
            rows.sort(key=lambda r: r[0])
            if len(rows) > limit:
                return [t.record(i) for _, t, i in rows[:limit]], rows[limit - 1][0] + 1
            return [t.record(i) for _, t, i in rows], max(self.lines, since)

    def last(self, kind: str, name: str) -> float | None:
        """The latest value of one field of one kind (over all its tables), or None."""
        with self.lock:
            best: tuple[int, float] | None = None
            for table in self.tables_of(kind):
                col = table.cols.get(name)
                i = None if col is None else _last_finite(col)
                if col is not None and i is not None and (best is None or table.lines[i] > best[0]):
                    best = (table.lines[i], col[i])
            return None if best is None else best[1]


def _last_finite(col: array[float]) -> int | None:
    for i in range(len(col) - 1, -1, -1):
        if not math.isnan(col[i]):
            return i
    return None


def last_value(col: array[float]) -> float | None:
    """The last non-NaN value of a column, or None."""
    i = _last_finite(col)
    return None if i is None else col[i]


class MetricsCache:
    """RunMetrics per run directory, most recently used first, at most `max_runs` kept parsed."""

    def __init__(self, max_runs: int = 16) -> None:
        self.max_runs = max_runs
        self._runs: OrderedDict[Path, RunMetrics] = OrderedDict()
        self._lock = threading.Lock()

    def peek(self, run_path: Path) -> RunMetrics | None:
        """The run's metrics (refreshed) if already parsed, else None (nothing is parsed)."""
        with self._lock:
            metrics = self._runs.get(run_path)
        return None if metrics is None else metrics.refresh()

    def get(self, run_path: Path) -> RunMetrics:
        """The run's metrics, refreshed from disk when the file's size, mtime or inode changed."""
        with self._lock:
            metrics = self._runs.pop(run_path, None) or RunMetrics(run_path)
            self._runs[run_path] = metrics
            while len(self._runs) > self.max_runs:
                self._runs.popitem(last=False)
        return metrics.refresh()
