"""The results directory as the dashboard sees it: runs found safely, their info and metrics."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from testbed.dashboard.charts import FIXED_KINDS
from testbed.dashboard.metrics_store import MetricsCache, RunMetrics, last_value
from testbed.dashboard.paths import BadName, check_name, contained, is_inside
from testbed.dashboard.runs import (
    FileCache,
    cluster_tables,
    infer_status,
    is_run_dir,
    last_write,
    parse_events,
    parse_json_object,
    parse_yaml_object,
    power_rows,
    summary_fields,
    tail_latest,
)
from testbed.metrics.run_dir import EVENTS_FILE, SPEC_FILE, SUMMARY_FILE

Tracker = Callable[[Path], "bool | None"]


class RunNotFound(LookupError):
    """No run directory by that name inside the results root."""


class RunStore:
    """Reads runs under one results root; never touches a path outside it."""

    def __init__(
        self, root: Path, tracker: Tracker | None = None, stale_after_s: float = 900.0
    ) -> None:
        self.root = root.resolve()
        self.metrics = MetricsCache()
        self.files = FileCache()
        self.tracker: Tracker = tracker or (lambda _path: None)
        self.stale_after_s = stale_after_s
        self.warming: threading.Thread | None = None

    def run_path(self, experiment: str, run: str) -> Path:
        """The run directory for a URL's names; BadName or RunNotFound unless a real run inside."""
        try:
            path = contained(self.root, experiment, run)
        except LookupError:
            raise RunNotFound(f"no run {experiment}/{run} in the results directory") from None
        if not is_run_dir(path):
            raise RunNotFound(f"no run {experiment}/{run} in the results directory")
        return path

    def refs(self) -> list[tuple[str, str, Path]]:
        """(experiment, run id, path) of every run, newest run id first."""
        out = []
        for exp_dir in _subdirs(self.root):
            for run_dir in _subdirs(exp_dir):
                if is_inside(self.root, run_dir) and is_run_dir(run_dir):
                    out.append((exp_dir.name, run_dir.name, run_dir.resolve()))
        return sorted(out, key=lambda r: (r[1], r[0]), reverse=True)

    def summary(self, path: Path) -> dict[str, Any] | None:
        summary: dict[str, Any] | None = self.files.get(path / SUMMARY_FILE, parse_json_object)
        return summary

    def spec(self, path: Path) -> dict[str, Any] | None:
        spec: dict[str, Any] | None = self.files.get(path / SPEC_FILE, parse_yaml_object)
        return spec

    def events(self, path: Path) -> list[dict[str, Any]]:
        return self.files.get(path / EVENTS_FILE, parse_events) or []

    def run_metrics(self, path: Path) -> RunMetrics:
        return self.metrics.get(path)

    def info(self, experiment: str, run: str, path: Path) -> dict[str, Any]:
        """One row of the runs list."""
        summary, spec = self.summary(path), self.spec(path)
        status, reason = infer_status(
            summary, self.events(path), self.tracker(path), last_write(path), self.stale_after_s
        )
        devices = cluster_tables(spec)["devices"]
        row: dict[str, Any] = {
            "experiment": experiment,
            "run": run,
            "key": f"{experiment}/{run}",
            **summary_fields(summary, spec),
            "status": status,
            "devices": [d["name"] for d in devices],
        }
        row["reason"] = reason or row.get("reason")
        if summary is None or status == "running":
            row.update(self.latest(path))
        return row

    def latest(self, path: Path) -> dict[str, Any]:
        """Latest step and test accuracy: from parsed metrics if cached, else the file's tail."""
        metrics = self.metrics.peek(path)
        if metrics is None:
            return tail_latest(path)
        step = metrics.last("train", "step") or metrics.last("eval", "step")
        return {"last_step": step, "last_test_accuracy": metrics.last("eval", "test_acc")}

    def list_runs(self) -> list[dict[str, Any]]:
        return [self.info(exp, run, path) for exp, run, path in self.refs()]

    def outline(self, experiment: str, run: str) -> dict[str, Any]:
        """A run page's data that needs no metrics parse: info, spec, declared cluster, events."""
        path = self.run_path(experiment, run)
        spec = self.spec(path)
        return {
            "run": self.info(experiment, run, path),
            "spec": spec,
            "summary": self.summary(path),
            **cluster_tables(spec),
            "power": power_rows(self.summary(path)),
            "events": self.events(path)[-20:],
        }

    def detail(self, experiment: str, run: str) -> dict[str, Any]:
        """The outline plus what the metrics say: kinds, line counts, observed devices and links."""
        outline = self.outline(experiment, run)
        return {**outline, **metrics_overview(self.run_metrics(self.run_path(experiment, run)))}

    def warm(self, limit: int) -> threading.Thread:
        """Parse the metrics of the `limit` newest runs (running ones first) in a daemon thread,
        so their pages open warm; the thread is also kept as `self.warming`."""
        self.warming = threading.Thread(target=self._warm, args=(limit,), name="warm", daemon=True)
        self.warming.start()
        return self.warming

    def _warm(self, limit: int) -> None:
        refs = self.refs()
        running = [p for e, r, p in refs if self.info(e, r, p)["status"] == "running"]
        order = list(dict.fromkeys([*running, *(p for _, _, p in refs)]))
        for path in order[: min(limit, self.metrics.max_runs)]:
            self.metrics.get(path)

    def prefetch(self, path: Path) -> None:
        """Start parsing a run's metrics in the background (its page's charts will need them)."""
        if self.metrics.peek(path) is None:
            threading.Thread(
                target=self.metrics.get, args=(path,), name="prefetch", daemon=True
            ).start()


def _subdirs(path: Path) -> list[Path]:
    """Child directories whose names are plain names (hidden and odd names skipped)."""
    try:
        children = list(path.iterdir())
    except OSError:
        return []
    return [c for c in children if _plain(c.name) and c.is_dir()]


def _plain(name: str) -> bool:
    try:
        check_name("name", name)
    except BadName:
        return False
    return True


def metrics_overview(metrics: RunMetrics) -> dict[str, Any]:
    return {
        "observed": observed_groups(metrics),
        "kinds": metrics.kinds(),
        "lines": metrics.lines,
        "bad_lines": metrics.bad_lines,
    }


def observed_groups(metrics: RunMetrics) -> list[dict[str, Any]]:
    """Per device/stage/link in the metrics (kinds beyond train/eval): tags and latest values."""
    rows = []
    with metrics.lock:
        for (kind, _), table in metrics.tables.items():
            if kind in FIXED_KINDS:
                continue
            latest = {
                name: v for name, col in table.cols.items() if (v := last_value(col)) is not None
            }
            rows.append(
                {"kind": kind, "tags": table.tags, "points": len(table.lines), "latest": latest}
            )
    return rows
