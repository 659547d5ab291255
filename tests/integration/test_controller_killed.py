"""The controller killed with SIGKILL: its workers end on their own, the next command cleans up."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from testbed.emulation import lease
from testbed.emulation.cleanup import find
from testbed.processes import pid_alive

pytestmark = pytest.mark.slow

GONE_WITHIN_S = 10.0


def _raw(cluster: bool) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "name": "killed-controller",
        "model": {"name": "four-layer", "split_after": ["conv1"], "width": 0.5},
        "algorithm": {"name": "sg", "sg": {"lr": 3.0e-3}},
        "training": {"batch_size": 32, "lr": 1.0e-3, "iterations": 100_000, "eval_every": 100_000,
                     "log_every": 5, "eval_samples": 500, "threads": 1},
        "job": {"mode": "sg"},
    }
    if cluster:
        raw["cluster"] = {"devices": [{"name": "dev0", "cpus": 0.9}, {"name": "dev1", "cpus": 0.9}],
                          "links": [{"device": "dev0", "rate": "1gbit"}]}
        raw["placement"] = {"0": "dev0", "1": "dev1"}
    return raw


def _kill_controller_while_training(tmp_path: Path, cluster: bool) -> tuple[Path, dict[str, int]]:
    """Start `testbed run`, SIGKILL it once the workers train; returns (run dir, worker pids)."""
    spec, results = tmp_path / "killed.yaml", tmp_path / "results"
    spec.write_text(yaml.safe_dump(_raw(cluster)))
    argv = [sys.executable, "-m", "testbed", "run", str(spec), "--results", str(results),
            "--no-progress"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while not any('"kind": "worker"' in p.read_text()  # a stage has trained a few steps
                      for p in results.glob("*/*/workers/*.metrics.jsonl")
                      if not p.name.startswith("ps.")):
            assert proc.poll() is None and time.monotonic() < deadline, "never trained"
            time.sleep(0.05)
        run = next(results.glob("*/*/workers")).parent
        pids = {p.name.split(".")[0]: json.loads(p.read_text())["pid"]
                for p in (run / "workers").glob("*.ready.json")}
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return run, pids


def _wait_gone(pids: dict[str, int]) -> float:
    start = time.monotonic()
    while any(pid_alive(p) for p in pids.values()):
        if time.monotonic() - start > GONE_WITHIN_S:
            break
        time.sleep(0.05)
    return time.monotonic() - start


def test_workers_end_on_their_own_when_the_controller_is_killed(tmp_path: Path) -> None:
    run, pids = _kill_controller_while_training(tmp_path, cluster=False)
    took = _wait_gone(pids)
    assert sorted(pids) == ["ps", "stage0", "stage1"]
    assert {n: p for n, p in pids.items() if pid_alive(p)} == {}, f"left after {took:.1f} s"
    assert not (run / "summary.json").exists()  # nothing ran the controller's own cleanup


@pytest.mark.privileged
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces, cgroups, tc)")
def test_the_next_command_removes_what_a_killed_controller_left(tmp_path: Path) -> None:
    run, pids = _kill_controller_while_training(tmp_path, cluster=True)
    took = _wait_gone(pids)
    assert {n: p for n, p in pids.items() if pid_alive(p)} == {}, f"left after {took:.1f} s"
    left = find(run.name)
    assert left.netns and left.cgroups and left.links  # the controller removed nothing
    assert run.name in [x.run_id for x in lease.dead()]
    listed = subprocess.run([sys.executable, "-m", "testbed", "list"], capture_output=True,
                            text=True, timeout=120)  # fmt: skip
    assert listed.returncode == 0 and f"cleaned up after run {run.name}" in listed.stderr
    assert not find(run.name)
    assert run.name not in [x.run_id for x in lease.leases()]
