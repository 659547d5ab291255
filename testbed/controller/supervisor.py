"""Start worker subprocesses in their own process groups, report deaths, always clean up."""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO

from testbed.processes import proc_stat

log = logging.getLogger(__name__)

DEFAULT_GRACE_S = 5.0
_KILL_WAIT_S = 5.0
_STDERR_DRAIN_S = 1.0
_POLL_S = 0.02


class WorkerStartError(RuntimeError):
    """A worker command could not be started."""


@dataclass(frozen=True)
class WorkerCommand:
    """How to start one worker: argv, extra environment, working directory, optional log file."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    log_path: Path | None = None  # stdout and stderr are appended here when set
    # how to start argv (default subprocess.Popen); an emulated device passes its own spawn,
    # called as launch(argv, env=..., cwd=..., stdin=..., stdout=..., stderr=..., ...)
    launch: Callable[..., subprocess.Popen[bytes]] | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError(f"WorkerCommand.name: got {self.name!r}, expected a non-empty name")
        if isinstance(self.argv, str) or not self.argv:
            raise ValueError(
                f"WorkerCommand.argv for {self.name!r}: got {self.argv!r}, "
                "expected a non-empty list like ['python', '-m', 'testbed.runtime.worker']"
            )


@dataclass(frozen=True)
class WorkerExit:
    """A worker process that ended: its exit code and the last lines it wrote to stderr."""

    name: str
    pid: int
    returncode: int
    stderr_tail: tuple[str, ...]
    during_shutdown: bool

    @property
    def failed(self) -> bool:
        """True when the worker ended on its own with a non-zero code (or a signal)."""
        return self.returncode != 0 and not self.during_shutdown

    def describe(self) -> str:
        """One paragraph for logs and error messages."""
        if self.returncode < 0:
            how = f"was killed by {signal.Signals(-self.returncode).name}"
        else:
            how = f"exited with code {self.returncode}"
        tail = "\n".join(f"  | {line}" for line in self.stderr_tail)
        return f"worker {self.name!r} (pid {self.pid}) {how}" + (f"\n{tail}" if tail else "")


class _Worker:
    """One started process plus the threads that drain its stderr and wait for its exit."""

    def __init__(self, command: WorkerCommand, stderr_lines: int) -> None:
        self.command = command
        self.tail: collections.deque[str] = collections.deque(maxlen=stderr_lines)
        self._log: IO[bytes] | None = None
        if command.log_path is not None:
            self._log = open(command.log_path, "ab")  # noqa: SIM115 - closed by the reader
        try:
            self.proc = (command.launch or subprocess.Popen)(
                list(command.argv),
                env={**os.environ, **command.env},
                cwd=command.cwd,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.PIPE,
                start_new_session=True,  # own process group: killpg reaches grandchildren
            )
        except OSError as err:
            if self._log is not None:
                self._log.close()
            raise WorkerStartError(
                f"worker {command.name!r}: cannot start {list(command.argv)!r}: {err}"
            ) from err
        self.reader = threading.Thread(
            target=self._drain, name=f"stderr-{command.name}", daemon=True
        )
        self.reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        with self.proc.stderr:
            for raw in self.proc.stderr:
                line = raw.decode("utf-8", errors="replace").rstrip("\n")
                self.tail.append(line)
                if self._log is not None:
                    self._log.write(raw)
                    self._log.flush()
                else:
                    print(f"[{self.command.name}] {line}", file=sys.stderr, flush=True)
        if self._log is not None:
            self._log.close()


class WorkerGroup:
    """Handle on the running workers: who exited, who failed, blocking waits for exits."""

    def __init__(self, stderr_lines: int) -> None:
        self._stderr_lines = stderr_lines
        self._workers: list[_Worker] = []
        self._exits: list[WorkerExit] = []
        self._cond = threading.Condition()
        self._stopping = False
        self._waiters: list[threading.Thread] = []

    @property
    def pids(self) -> dict[str, int]:
        """Worker name -> pid (also the id of the worker's process group)."""
        return {w.command.name: w.pid for w in self._workers}

    @property
    def stopping(self) -> bool:
        """True once terminate() has begun."""
        return self._stopping

    def start(self, command: WorkerCommand) -> None:
        """Start one more worker; names must be unique within the group."""
        if command.name in self.pids:
            raise ValueError(f"WorkerCommand.name: got duplicate {command.name!r}, expected unique")
        worker = _Worker(command, self._stderr_lines)
        self._workers.append(worker)
        waiter = threading.Thread(target=self._wait, args=(worker,), daemon=True)
        self._waiters.append(waiter)
        waiter.start()

    def _wait(self, worker: _Worker) -> None:
        code = worker.proc.wait()
        during_shutdown = self._stopping  # read at reap time, before draining stderr
        worker.reader.join(timeout=_STDERR_DRAIN_S)  # let the last stderr lines arrive
        ended = WorkerExit(
            worker.command.name, worker.pid, code, tuple(worker.tail), during_shutdown
        )
        with self._cond:
            self._exits.append(ended)
            self._cond.notify_all()

    def signal(self, name: str, sig: signal.Signals) -> int:
        """Send `sig` to one worker's process group (a fault injected into it); returns its pid."""
        pid = self.pids[name]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)
        return pid

    def exits(self) -> list[WorkerExit]:
        """Workers that have ended so far, in the order they ended."""
        with self._cond:
            return list(self._exits)

    def poll_failures(self) -> list[WorkerExit]:
        """Workers that ended on their own with a non-zero exit code, without blocking."""
        return [e for e in self.exits() if e.failed]

    def wait_any_exit(self, timeout: float | None) -> WorkerExit | None:
        """The first worker to end, waiting up to timeout seconds; None if all still run."""
        with self._cond:
            self._cond.wait_for(lambda: bool(self._exits), timeout=timeout)
            return self._exits[0] if self._exits else None

    def wait_for_exits(self, seen: int, timeout: float | None) -> list[WorkerExit]:
        """Exits after the first `seen`, waiting up to timeout for one; [] on timeout or stop."""
        with self._cond:
            self._cond.wait_for(lambda: len(self._exits) > seen or self._stopping, timeout)
            return list(self._exits[seen:])

    def terminate(self, grace_s: float = DEFAULT_GRACE_S) -> None:
        """SIGTERM every worker's process group, SIGKILL what is left after grace_s, reap all."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        groups = [w.pid for w in self._workers]
        try:
            _signal_groups(groups, signal.SIGTERM)
            _signal_groups(groups, signal.SIGCONT)  # a paused (stopped) worker handles it too
            _wait_groups_gone(groups, time.monotonic() + grace_s)
        finally:
            self._kill_and_reap(groups)

    def _kill_and_reap(self, groups: Sequence[int]) -> None:
        _signal_groups(groups, signal.SIGKILL)
        deadline = time.monotonic() + _KILL_WAIT_S
        for worker in self._workers:
            try:
                worker.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("worker %r (pid %d) survived SIGKILL", worker.command.name, worker.pid)
        if not _wait_groups_gone(groups, deadline):
            log.error("process groups %s still have members after SIGKILL", groups)
        for waiter in self._waiters:
            waiter.join(timeout=max(0.0, deadline - time.monotonic()))


def _signal_groups(groups: Sequence[int], sig: signal.Signals) -> None:
    for pgid in groups:
        if _group_alive(pgid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, sig)


def _wait_groups_gone(groups: Sequence[int], deadline: float) -> bool:
    while any(_group_alive(g) for g in groups):
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_S)
    return True


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if not Path("/proc").is_dir():
        return True
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            stat = proc_stat(int(entry.name))
            if stat is not None and stat[1] == pgid and stat[0] != "Z":
                return True
    return False


@contextmanager
def spawn_workers(
    commands: Sequence[WorkerCommand],
    *,
    grace_s: float = DEFAULT_GRACE_S,
    stderr_lines: int = 20,
) -> Iterator[WorkerGroup]:
    """Start every command; on leaving (normally, on error or Ctrl-C) stop and reap them all."""
    names = [c.name for c in commands]
    if len(set(names)) != len(names):
        raise ValueError(f"WorkerCommand names: got {names}, expected unique names")
    group = WorkerGroup(stderr_lines)
    try:
        for command in commands:
            group.start(command)
        yield group
    finally:
        group.terminate(grace_s)


class Watcher:
    """Background thread calling on_failure once per failed worker; stop() it or use `with`."""

    def __init__(
        self, group: WorkerGroup, on_failure: Callable[[WorkerExit], None], interval: float
    ) -> None:
        self._group = group
        self._on_failure = on_failure
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="worker-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        seen = 0
        while not self._stop.is_set() and not self._group.stopping:
            new = self._group.wait_for_exits(seen, timeout=self._interval)
            seen += len(new)
            for ended in new:
                if ended.failed:
                    self._notify(ended)

    def _notify(self, ended: WorkerExit) -> None:
        try:
            self._on_failure(ended)
        except Exception:  # a broken callback must not stop the watch
            log.exception("on_failure callback raised for %s", ended.name)

    def stop(self) -> None:
        """Stop watching and join the thread."""
        self._stop.set()
        self._thread.join()

    def __enter__(self) -> Watcher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def watch(
    group: WorkerGroup, on_failure: Callable[[WorkerExit], None], interval: float = 0.5
) -> Watcher:
    """Call on_failure(exit) from a background thread as soon as a worker fails."""
    if not interval > 0:
        raise ValueError(f"watch interval: got {interval}, expected a positive number of seconds")
    return Watcher(group, on_failure, interval)
