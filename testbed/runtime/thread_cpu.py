"""CPU seconds spent by each thread of this process, grouped by what the thread does (Linux /proc).

Groups: "main" (the training loop: Python and tf.function dispatch), Python threads by name
without their index ("send-downstream", "grpc-server", ...), native threads by their kernel name
("tf_Compute": TensorFlow's executor doing the math, "event_engine": gRPC's C core, ...).
Threads that already ended are not counted. Elsewhere than Linux the result is empty.

Each thread's CPU clock is read from /proc/self/task/<tid>/schedstat (the scheduler's run time
in nanoseconds); where the kernel lacks it, from the stat file's user + system clock ticks
(10 ms each at the usual 100 Hz, too coarse for per-message costs).
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

_TASKS = Path("/proc/self/task")
_INDEX = re.compile(r"[_-]?\d+$")


def group_of(name: str) -> str:
    """'grpc-server_1' -> 'grpc-server', 'Thread-1 (_serve)' -> '_serve', 'MainThread' -> 'main'."""
    if name == "MainThread":
        return "main"
    inner = re.search(r"\((.+)\)$", name)
    return _INDEX.sub("", inner.group(1) if inner else name) or name


def task_cpu_s(task: Path) -> float:
    """CPU seconds of one thread (/proc/<pid>/task/<tid>): nanosecond run time from schedstat,
    else user + system ticks from stat. OSError when the thread is gone."""
    try:
        return int((task / "schedstat").read_text().split()[0]) / 1e9
    except FileNotFoundError:
        if not task.exists():
            raise
    fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu_s(tasks_dir: Path = _TASKS) -> dict[str, float]:
    """CPU seconds of every live thread (of this process by default), summed per group."""
    python = {t.native_id: t.name for t in threading.enumerate()} if tasks_dir == _TASKS else {}
    out: dict[str, float] = {}
    try:
        tasks = list(tasks_dir.iterdir())
    except OSError:
        return {}
    for task in tasks:
        try:
            seconds = task_cpu_s(task)
            comm = (task / "comm").read_text().strip()
        except OSError:  # the thread ended meanwhile
            continue
        group = group_of(python.get(int(task.name), comm))
        out[group] = out.get(group, 0.0) + seconds
    return out
