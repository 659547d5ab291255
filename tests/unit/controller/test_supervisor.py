"""Worker supervision: deaths are reported fast; no process or grandchild outlives the context."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from testbed.controller.supervisor import (
    WorkerCommand,
    WorkerExit,
    WorkerStartError,
    spawn_workers,
    watch,
)
from testbed.processes import pid_alive

PY = sys.executable
SLEEPER = [PY, "-c", "import time; time.sleep(60)"]
# Starts a grandchild, records both pids, then sleeps; optionally ignores SIGTERM.
PARENT = """
import os, signal, subprocess, sys, time
if sys.argv[2] == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
tmp = sys.argv[1] + ".tmp"
with open(tmp, "w") as f:
    f.write(f"{os.getpid()} {child.pid}")
os.replace(tmp, sys.argv[1])
time.sleep(60)
"""


def _wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll condition until true or timeout (a deadline on a real condition, not a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _family(tmp_path: Path, name: str, mode: str = "polite") -> tuple[WorkerCommand, Path]:
    pid_file = tmp_path / f"{name}.pids"
    return WorkerCommand(name, [PY, "-c", PARENT, str(pid_file), mode]), pid_file


def _read_pids(pid_file: Path) -> list[int]:
    assert _wait_until(pid_file.exists), f"{pid_file} never appeared"
    return [int(p) for p in pid_file.read_text().split()]


def test_failed_worker_is_reported_with_code_and_stderr() -> None:
    crash = WorkerCommand(
        "crash", [PY, "-c", "import sys; print('boom: bad shape', file=sys.stderr); sys.exit(3)"]
    )
    with spawn_workers([WorkerCommand("ok", SLEEPER), crash]) as group:
        started = time.monotonic()
        ended = group.wait_any_exit(timeout=5)
        assert ended is not None and time.monotonic() - started < 5
        assert (ended.name, ended.returncode, ended.failed) == ("crash", 3, True)
        assert ended.stderr_tail[-1] == "boom: bad shape"
        assert "worker 'crash'" in ended.describe() and "exited with code 3" in ended.describe()
        assert group.poll_failures() == [ended]
        assert pid_alive(group.pids["ok"])


def test_watch_calls_on_failure_within_five_seconds() -> None:
    failed: list[WorkerExit] = []
    seen = threading.Event()

    def on_failure(ended: WorkerExit) -> None:
        failed.append(ended)
        seen.set()

    crash = WorkerCommand("crash", [PY, "-c", "import os; os.abort()"])
    with (
        spawn_workers([WorkerCommand("ok", SLEEPER), crash]) as group,
        watch(group, on_failure, 0.1),
    ):
        assert seen.wait(timeout=5)
    assert [(e.name, e.returncode) for e in failed] == [("crash", -6)]
    assert "killed by SIGABRT" in failed[0].describe()


def test_clean_exit_is_not_a_failure_and_shutdown_exits_are_expected() -> None:
    with spawn_workers(
        [WorkerCommand("done", [PY, "-c", "pass"]), WorkerCommand("s", SLEEPER)]
    ) as group:
        ended = group.wait_any_exit(timeout=5)
        assert ended is not None and (ended.name, ended.returncode, ended.failed) == (
            "done",
            0,
            False,
        )
    exits = {e.name: e for e in group.exits()}
    assert exits["s"].during_shutdown and not exits["s"].failed
    assert group.poll_failures() == []


@pytest.mark.parametrize("raised", [RuntimeError("controller bug"), KeyboardInterrupt()])
def test_exception_in_context_kills_children_and_grandchildren(
    tmp_path: Path, raised: BaseException
) -> None:
    polite, polite_pids = _family(tmp_path, "polite")
    stubborn, stubborn_pids = _family(tmp_path, "stubborn", "stubborn")
    pids: list[int] = []
    with pytest.raises(type(raised)), spawn_workers([polite, stubborn], grace_s=0.5):
        pids = _read_pids(polite_pids) + _read_pids(stubborn_pids)
        assert all(pid_alive(p) for p in pids)
        raise raised
    assert len(pids) == 4
    assert [p for p in pids if pid_alive(p)] == []


def test_normal_exit_kills_everything(tmp_path: Path) -> None:
    family, pid_file = _family(tmp_path, "fam")
    with spawn_workers([family], grace_s=2) as group:
        pids = _read_pids(pid_file)
    assert [p for p in pids if pid_alive(p)] == []
    assert group.exits()[0].returncode == -15  # SIGTERM was enough


def _live_children() -> set[int]:
    """Pids of this process's children that have not exited, from /proc."""
    children = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[1]) == os.getpid() and fields[0] != "Z":
            children.add(int(stat.parent.name))
    return children


def test_start_failure_cleans_up_started_workers() -> None:
    before = _live_children()
    commands = [
        WorkerCommand("ok", SLEEPER),
        WorkerCommand("missing", ["/nonexistent/worker-binary"]),
    ]
    with (
        pytest.raises(
            WorkerStartError,
            match=r"worker 'missing': cannot start \['/nonexistent/worker-binary'\]",
        ),
        spawn_workers(commands),
    ):
        pass  # pragma: no cover - not reached
    assert _live_children() == before


def test_log_path_receives_stdout_and_stderr(tmp_path: Path) -> None:
    log = tmp_path / "w.log"
    cmd = WorkerCommand(
        "w", [PY, "-c", "import sys; print('out'); print('err', file=sys.stderr)"], log_path=log
    )
    with spawn_workers([cmd]) as group:
        assert group.wait_any_exit(timeout=5) is not None
    assert sorted(log.read_text().split()) == ["err", "out"]


@pytest.mark.parametrize(
    ("name", "argv", "pattern"),
    [("", ["x"], "WorkerCommand.name"), ("a", "python x.py", "expected a non-empty list")],
)
def test_bad_worker_command_is_rejected(name: str, argv: list[str], pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        WorkerCommand(name, argv)


def test_duplicate_names_are_rejected() -> None:
    twins = [WorkerCommand("a", SLEEPER), WorkerCommand("a", SLEEPER)]
    with pytest.raises(ValueError, match="expected unique"), spawn_workers(twins):
        pass  # pragma: no cover
