"""Process liveness from /proc: whether a pid (or a zombie) is alive, its group and start time."""

from __future__ import annotations

import ctypes
import os
import signal
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, process group) of pid from /proc, or None when it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return fields[0], int(fields[2])


def pid_alive(pid: int) -> bool:
    """True if pid exists and is not a zombie (a zombie has ended; only its parent reaps it)."""
    if Path("/proc").is_dir():
        stat = proc_stat(pid)
        return stat is not None and stat[0] != "Z"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def start_time(pid: int) -> float | None:
    """When pid started, in Unix seconds (to 1/CLK_TCK), or None when it does not exist.

    A pid alone may be reused; a pid with its start time names one process for good.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = next(
            float(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
    except (FileNotFoundError, ProcessLookupError, StopIteration):
        return None
    ticks = int(stat[stat.rindex(")") + 2 :].split()[19])
    return boot + ticks / os.sysconf("SC_CLK_TCK")


def started_before(pid: int, t: float, slack_s: float = 2.0) -> bool:
    """True if pid is alive and started no later than Unix time t (+ slack): the process that
    recorded its pid at t, not a later one that reuses the number."""
    began = start_time(pid)
    return began is not None and pid_alive(pid) and began <= t + slack_s


def die_with_parent(sig: int = signal.SIGTERM) -> bool:
    """Have the kernel send `sig` to this process the moment its parent ends, however it ends
    (a SIGKILLed controller runs no cleanup). Linux only; returns whether it was set.

    The kernel sends it when the parent *thread* that started this process exits, so a parent
    must start such children from a thread that lives as long as they should.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False
