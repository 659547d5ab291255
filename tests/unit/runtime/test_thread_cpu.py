"""Per-thread CPU accounting of a worker process (/proc/self/task)."""

from __future__ import annotations

import threading
import time

import pytest

from testbed.runtime.thread_cpu import group_of, thread_cpu_s


@pytest.mark.parametrize(("name", "group"), [
    ("MainThread", "main"), ("grpc-server_1", "grpc-server"), ("Thread-1 (_serve)", "_serve"),
    ("send-downstream", "send-downstream"), ("tf_Compute", "tf_Compute"), ("worker-12", "worker"),
])
def test_thread_names_group_by_role(name: str, group: str) -> None:
    assert group_of(name) == group


def test_a_busy_named_thread_is_charged_its_cpu() -> None:
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            sum(range(1000))

    before = thread_cpu_s()
    t = threading.Thread(target=spin, name="busy-loop_3")
    t.start()
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:
        time.sleep(0.01)
    after = thread_cpu_s()
    stop.set()
    t.join()
    assert after.get("busy-loop", 0.0) >= 0.1
    assert "busy-loop" not in before
    main_delta = after.get("main", 0.0) - before.get("main", 0.0)  # it mostly slept
    assert main_delta < after["busy-loop"]


def test_per_thread_cpu_has_sub_tick_resolution() -> None:
    """25 ms of a thread's CPU reads as 25 ms, not as 20 or 30 (10 ms clock ticks)."""
    spun, release = threading.Event(), threading.Event()
    own: list[float] = []

    def spin() -> None:
        while time.thread_time() < 0.025:
            pass
        own.append(time.thread_time())
        spun.set()
        release.wait(10)

    t = threading.Thread(target=spin, name="spin-resolution")
    t.start()
    assert spun.wait(30)
    seen = thread_cpu_s()["spin-resolution"]
    release.set()
    t.join()
    assert seen == pytest.approx(own[0], abs=2e-3)


def test_another_process_threads_are_read_from_its_task_dir() -> None:
    import os
    from pathlib import Path

    from testbed.runtime.thread_cpu import task_cpu_s

    ours = thread_cpu_s(Path(f"/proc/{os.getpid()}/task"))
    assert ours and all(v >= 0 for v in ours.values())
    assert task_cpu_s(Path(f"/proc/{os.getpid()}/task/{threading.main_thread().native_id}")) > 0
