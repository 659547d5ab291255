"""CPU seconds spent by each thread of this process, grouped by what the thread does (Linux /proc).

Groups: "main" (the training loop: Python and tf.function dispatch), Python threads by name
without their index ("send-downstream", "grpc-server", ...), native threads by their kernel name
("tf_Compute": TensorFlow's executor doing the math, "event_engine": gRPC's C core, ...).
Threads that already ended are not counted. Elsewhere than Linux the result is empty.
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


def thread_cpu_s() -> dict[str, float]:
    """CPU seconds (user + system) of every live thread, summed per group."""
    tick = os.sysconf("SC_CLK_TCK")
    python = {t.native_id: t.name for t in threading.enumerate()}
    out: dict[str, float] = {}
    try:
        tasks = list(_TASKS.iterdir())
    except OSError:
        return {}
    for task in tasks:
        try:
            stat = (task / "stat").read_text()
            comm = (task / "comm").read_text().strip()
        except OSError:  # the thread ended meanwhile
            continue
        fields = stat.rsplit(")", 1)[1].split()
        seconds = (int(fields[11]) + int(fields[12])) / tick
        group = group_of(python.get(int(task.name), comm))
        out[group] = out.get(group, 0.0) + seconds
    return out
