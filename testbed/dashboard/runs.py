"""What a run directory says: summary, spec, events, inferred status, devices and links."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from testbed import processes
from testbed.metrics.run_dir import EVENTS_FILE, METRICS_FILE, SPEC_FILE, SUMMARY_FILE

STATUSES = ("running", "completed", "failed", "interrupted")
RUN_FILES = (SPEC_FILE, METRICS_FILE, EVENTS_FILE, SUMMARY_FILE)
SUMMARY_KEYS = (
    "scale",
    "model",
    "algorithm",
    "mode",
    "final_test_accuracy",
    "best_test_accuracy",
    "mean_it_s",
    "iterations",
    "started",
    "wall_time_s",
    "time_to_accuracy",
    "reason",
)


class FileCache:
    """Parsed small files, re-read only when their size or mtime changes."""

    def __init__(self) -> None:
        self._items: dict[Path, tuple[tuple[int, int], Any]] = {}
        self._lock = threading.Lock()

    def get(self, path: Path, parse: Callable[[bytes], Any]) -> Any:
        """parse(bytes) of the file, None when it is missing or does not parse."""
        try:
            st = path.stat()
        except OSError:
            return None
        ident = (st.st_size, st.st_mtime_ns)
        with self._lock:
            hit = self._items.get(path)
        if hit is not None and hit[0] == ident:
            return hit[1]
        try:
            value = parse(path.read_bytes())
        except (OSError, ValueError, yaml.YAMLError):
            value = None
        with self._lock:
            self._items[path] = (ident, value)
        return value


def parse_json_object(data: bytes) -> dict[str, Any] | None:
    value = json.loads(data)
    return value if isinstance(value, dict) else None


def parse_yaml_object(data: bytes) -> dict[str, Any] | None:
    value = yaml.safe_load(data)
    return value if isinstance(value, dict) else None


def parse_events(data: bytes) -> list[dict[str, Any]]:
    out = []
    for line in data.splitlines():
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            out.append(value)
    return out


def is_run_dir(path: Path) -> bool:
    return path.is_dir() and any((path / f).is_file() for f in RUN_FILES)


def last_write(path: Path) -> float | None:
    """The newest mtime among the run's files."""
    times = [(path / f).stat().st_mtime for f in RUN_FILES if (path / f).exists()]
    return max(times) if times else None


def tail_latest(run_path: Path, max_bytes: int = 256 * 1024) -> dict[str, Any]:
    """Latest step and test accuracy from the last `max_bytes` of metrics.jsonl (no full parse)."""
    try:
        with open(run_path / METRICS_FILE, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - max_bytes))
            tail = f.read()
    except OSError:
        return {"last_step": None, "last_test_accuracy": None}
    step = acc = None
    for line in reversed(tail.splitlines()[1:] if len(tail) >= max_bytes else tail.splitlines()):
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and step is None and isinstance(rec.get("step"), (int, float)):
            step = rec["step"]
        if isinstance(rec, dict) and acc is None and rec.get("kind") == "eval":
            acc = rec.get("test_acc")
        if step is not None and acc is not None:
            break
    return {"last_step": step, "last_test_accuracy": acc}


def run_process_alive(pid: Any, host: Any) -> bool | None:
    """Whether the recorded process is alive on this host; None when that cannot be told."""
    if not isinstance(pid, int) or host not in (None, socket.gethostname()):
        return None
    return processes.pid_alive(pid)


def infer_status(
    summary: dict[str, Any] | None,
    events: list[dict[str, Any]],
    tracked: bool | None,
    written: float | None,
    stale_after_s: float,
) -> tuple[str, str | None]:
    """(status, reason) of a run. A run without summary.json is running while its process lives.

    Liveness comes from, in order: a process this dashboard started (`tracked`), a pid recorded in
    the start event, and else how recently the run's files were written (`stale_after_s`).
    """
    starts = [i for i, e in enumerate(events) if e.get("event") in ("start", "resume")]
    current = events[starts[-1]:] if starts else events  # a resumed run: its latest part
    resumed = bool(starts) and events[starts[-1]].get("event") == "resume"
    end = next((e for e in reversed(current) if e.get("event") == "end"), None)
    if summary and summary.get("status") in STATUSES and (end is not None or not resumed):
        return summary["status"], summary.get("reason")
    if end is not None and end.get("status") in STATUSES:
        return end["status"], None
    start = current[0] if starts else {}
    alive = tracked if tracked is not None else run_process_alive(start.get("pid"), start.get("host"))
    if alive is None and written is not None:
        alive = time.time() - written < stale_after_s
    if alive:
        return "running", None
    return "interrupted", "no summary.json and the run's process is gone (killed?)"


def _cell(value: Any) -> Any:
    """A table cell: scalars as they are, lists of scalars joined, anything else left out (None)."""
    if isinstance(value, list) and all(not isinstance(v, (dict, list)) for v in value):
        return "-".join(str(v) for v in value)
    return None if isinstance(value, (dict, list)) else value


def _row_name(props: dict[str, Any], key: Any) -> str:
    """A device's name; a link's 'a-b' pair, 'a' for a device's access link, or its from-to."""
    for field in ("name", "pair", "device"):
        if props.get(field) not in (None, "", []):
            return str(_cell(props[field]))
    ends = [str(props[k]) for k in ("from", "to") if k in props]
    return "-".join(ends) if ends else str(key)


def _rows(section: Any) -> list[dict[str, Any]]:
    """Devices, links or schedule entries as table rows with a 'name' (from a list or a mapping)."""
    items = section.items() if isinstance(section, dict) else enumerate(section or [])
    rows = []
    for key, value in items:
        props = value if isinstance(value, dict) else {"value": value}
        cells = {k: _cell(v) for k, v in props.items() if k != "name"}
        rows.append(
            {"name": _row_name(props, key), **{k: v for k, v in cells.items() if v is not None}}
        )
    return rows


def cluster_tables(spec: dict[str, Any] | None) -> dict[str, list[dict[str, Any]]]:
    """Devices, links and link schedule declared by the spec's cluster (empty when it has none)."""
    cluster = (spec or {}).get("cluster") or {}
    if not isinstance(cluster, dict):
        cluster = {}
    return {part: _rows(cluster.get(part)) for part in ("devices", "links", "schedule")}


def power_rows(summary: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Per device and in total: the emulated power meter's training-window numbers, if any."""
    power = (summary or {}).get("power")
    if not isinstance(power, dict) or not isinstance(power.get("devices"), dict):
        return []
    rows = []
    for name, dev in power["devices"].items():
        if isinstance(dev, dict):
            model = dev.get("model") or {}
            rows.append({"name": name, **{k: _round(dev.get(k)) for k in POWER_COLUMNS},
                         "idle_w": model.get("idle_w"), "busy_w": model.get("busy_w")})  # fmt: skip
    if "energy_j" in power:
        rows.append({"name": "all (model)", **{k: _round(power.get(k)) for k in POWER_COLUMNS},
                     "edp_js": _round(power.get("edp_js"))})  # fmt: skip
    return rows


POWER_COLUMNS = ("power_w", "energy_j", "utilisation", "seconds")


def _round(value: Any) -> Any:
    return round(value, 3) if isinstance(value, float) else value


def summary_fields(summary: dict[str, Any] | None, spec: dict[str, Any] | None) -> dict[str, Any]:
    """The list-page columns from summary.json, falling back to the spec for a running run."""
    spec = spec or {}
    out = {k: (summary or {}).get(k) for k in SUMMARY_KEYS}
    out["mode"] = out["mode"] or (spec.get("job") or {}).get("mode")
    out["scale"] = out["scale"] or spec.get("scale")
    out["model"] = out["model"] or (spec.get("model") or {}).get("name")
    out["algorithm"] = out["algorithm"] or (spec.get("algorithm") or {}).get("name")
    out["iterations"] = out["iterations"] or (spec.get("training") or {}).get("iterations")
    return out
