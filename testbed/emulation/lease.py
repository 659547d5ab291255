"""Who owns a run's emulation resources: a lease file naming its controller, and its liveness.

A backend takes the lease before it creates anything (namespaces, qdiscs, cgroups,
containers) and releases it after its teardown. A lease whose controller is gone -- no
process with that pid and start time on this host since this boot, e.g. after a SIGKILL -- is
dead, and `cleanup.sweep()` removes that run's resources. Liveness, not a global sweep,
decides: other runs (another user's, another checkout's) may be live on the same machine,
and resources without a lease are never swept (only `cleanup.clean(run_id)` removes them).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from testbed.emulation.naming import check_run_id
from testbed.processes import start_time

_SUFFIX = ".lease.json"
_SAME_START_S = 0.05  # start times are in clock ticks (1/100 s)


def lease_dir() -> Path:
    """/run/testbed/leases (cleared at boot, like namespaces and cgroups) when writable, else a
    per-user runtime folder; $TESTBED_LEASE_DIR overrides (tests)."""
    env = os.environ.get("TESTBED_LEASE_DIR")
    if env:
        return Path(env)
    if os.access("/run", os.W_OK):
        return Path("/run/testbed/leases")
    runtime = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    return Path(runtime) / f"testbed-{os.getuid()}" / "leases"


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


@dataclass(frozen=True)
class Lease:
    """A run's owner: the controller's pid and start time, its host and the boot it ran in."""

    run_id: str
    pid: int
    started: float
    host: str
    boot: str
    taken: float

    def alive(self) -> bool:
        """True while the owning controller runs (or when it runs elsewhere: not ours to judge)."""
        if self.host != socket.gethostname():
            return True
        if self.boot != boot_id():
            return False
        began = start_time(self.pid)
        return began is not None and abs(began - self.started) <= _SAME_START_S


def _path(run_id: str) -> Path:
    return lease_dir() / f"{check_run_id(run_id)}{_SUFFIX}"


def take(run_id: str) -> Lease:
    """Record this process as the owner of `run_id`'s resources (atomically)."""
    pid = os.getpid()
    began = start_time(pid)
    lease = Lease(run_id, pid, began if began is not None else 0.0, socket.gethostname(),
                  boot_id(), time.time())  # fmt: skip
    path = _path(run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{pid}.tmp")
    tmp.write_text(json.dumps(asdict(lease)))
    os.replace(tmp, path)
    return lease


def release(run_id: str) -> None:
    """Forget the lease (after the run's resources are gone)."""
    _path(run_id).unlink(missing_ok=True)


def read(path: Path) -> Lease | None:
    """The lease in `path`, or None when it is unreadable (then it is left alone)."""
    try:
        raw = json.loads(path.read_text())
        return Lease(**{k: raw[k] for k in Lease.__dataclass_fields__})
    except (OSError, ValueError, KeyError, TypeError):
        return None


def leases() -> list[Lease]:
    """Every readable lease, oldest first."""
    folder = lease_dir()
    if not folder.is_dir():
        return []
    found = [read(p) for p in folder.glob(f"*{_SUFFIX}")]
    return sorted((x for x in found if x is not None), key=lambda x: x.taken)


def dead() -> list[Lease]:
    """Leases whose controller is gone."""
    return [x for x in leases() if not x.alive()]


@contextlib.contextmanager
def exclusive(run_id: str) -> Iterator[bool]:
    """Yield True if this process may clean up `run_id` now (no other sweep is at it)."""
    path = _path(run_id)
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield path.exists()
    finally:
        os.close(fd)
