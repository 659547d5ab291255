"""Follow the workers' metric files and feed their points into the run's sinks as they appear."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from testbed.metrics.sink import Point
from testbed.runtime.workdir import METRICS

_SUFFIX = METRICS


def parse_line(line: str, run_tags: dict[str, str]) -> Point | None:
    """A worker's JSON line as a Point with the run's tags added; None for a malformed line."""
    try:
        rec = json.loads(line)
        return Point(rec["kind"], rec["fields"], {**run_tags, **rec["tags"]}, int(rec["time_ns"]))
    except (ValueError, KeyError, TypeError):
        return None


class MetricsTail:
    """A thread that reads new complete lines of workdir/*.metrics.jsonl every `interval` s."""

    def __init__(
        self,
        workdir: Path,
        run_tags: dict[str, str],
        write: Callable[[Point], None],
        interval: float = 0.5,
    ) -> None:
        self.workdir, self.run_tags, self._write = workdir, run_tags, write
        self.interval = interval
        # what the files hold already belongs to an earlier part of the run (before a resume)
        self._offsets: dict[Path, int] = {p: p.stat().st_size for p in workdir.glob(f"*{_SUFFIX}")}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.points = self.malformed = 0
        self._thread = threading.Thread(target=self._run, name="metrics-tail", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.poll()

    def poll(self) -> int:
        """Read whatever is new in every worker file; returns the number of points written."""
        with self._lock:
            before = self.points
            for path in sorted(self.workdir.glob(f"*{_SUFFIX}")):
                self._read(path)
            return self.points - before

    def _read(self, path: Path) -> None:
        with open(path, "rb") as f:
            f.seek(self._offsets.get(path, 0))
            chunk = f.read()
        end = chunk.rfind(b"\n") + 1  # only complete lines; a partial one waits for its newline
        self._offsets[path] = self._offsets.get(path, 0) + end
        for line in chunk[:end].decode("utf-8", errors="replace").splitlines():
            point = parse_line(line, self.run_tags) if line.strip() else None
            if point is None:
                self.malformed += bool(line.strip())
                continue
            self._write(point)
            self.points += 1

    def __enter__(self) -> MetricsTail:
        self._thread.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()
        self.poll()  # the last lines, also after a failure
