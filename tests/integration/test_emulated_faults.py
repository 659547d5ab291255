"""Privileged tier: faults from the cluster's schedule in a local-backend run under `restart`.

A paused device and a cut link are ridden out (noticed as unresponsive, then answering
again); a killed device costs one restart from the latest checkpoint; the run completes its
budget and leaves nothing behind.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from testbed.controller.experiment import run_experiment
from testbed.emulation import lease
from testbed.emulation.cleanup import find
from testbed.metrics.run_dir import read_metrics, read_summary
from testbed.processes import pid_alive
from testbed.spec.load import parse_spec

pytestmark = [
    pytest.mark.privileged,
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces, cgroups, tc)"),
]

STEPS = 240
SCHEDULE = [
    {"at_s": 3.0, "device": "dev1", "fault": "pause"},
    {"at_s": 5.0, "device": "dev1", "fault": "resume"},
    {"at_s": 8.0, "device": "dev0", "fault": "link-down"},
    {"at_s": 10.0, "device": "dev0", "fault": "link-up"},
    {"at_s": 14.0, "device": "dev1", "fault": "kill"},
]


def _raw() -> dict[str, Any]:
    return {
        "name": "emulated-faults",
        "model": {"name": "four-layer", "split_after": ["conv1"], "width": 0.5},
        "algorithm": {"name": "sg", "sg": {"lr": 3.0e-3}},
        "training": {"batch_size": 32, "lr": 1.0e-3, "iterations": STEPS, "eval_every": STEPS,
                     "log_every": 5, "eval_samples": 500, "threads": 1, "checkpoint_every": 20},
        "job": {"mode": "sg", "on_failure": "restart", "hang_timeout_s": 10},
        "cluster": {
            "devices": [{"name": "dev0", "cpus": 0.9}, {"name": "dev1", "cpus": 0.9}],
            # slow enough that the budget outlasts the schedule: ~0.15 s per step on the link
            "links": [{"device": "dev0", "rate": "20mbit"}, {"device": "dev1", "rate": "20mbit"}],
            "schedule": SCHEDULE,
        },
        "placement": {"0": "dev0", "1": "dev1"},
    }


def test_scheduled_faults_are_survived_and_leave_nothing(tmp_path: Path) -> None:
    run = run_experiment(parse_spec(_raw()), tmp_path, progress=False)
    summary = read_summary(run.path)
    events = [json.loads(line) for line in (run.path / "events.jsonl").read_text().splitlines()]
    names = [e["event"] for e in events]
    injected = [(e["fault"], e.get("pids")) for e in events if e["event"] == "fault_injected"]
    assert [f for f, _ in injected] == [e["fault"] for e in SCHEDULE], events
    assert all(pids for f, pids in injected if f in ("pause", "kill"))
    gone = {e["worker"] for e in events if e["event"] == "worker_unresponsive"}
    assert {"dev0", "dev1"} <= gone  # the pause and the cut link were noticed ...
    back = {e["worker"] for e in events if e["event"] == "worker_responsive"}
    assert {"dev0", "dev1"} <= back  # ... and ridden out: the kill is the only restart

    assert summary["status"] == "completed", summary.get("reason")
    (failure,) = summary["resilience"]["failures"]
    assert "SIGKILL" in failure["reason"] and summary["resilience"]["restarts"] == 1
    assert failure["steps_lost"] <= 2 * 20 and names.count("workers_started") == 2
    assert [r["step"] for r in read_metrics(run.path, "train")] == list(range(5, STEPS + 1, 5))
    assert summary["final_test_accuracy"] > 0.5

    pids = [json.loads(p.read_text())["pid"] for p in (run.path / "workers").glob("*.ready.json")]
    assert pids and not [p for p in pids if pid_alive(p)]
    assert not find(run.run_id), "the run left labelled resources behind"
    assert run.run_id not in [x.run_id for x in lease.leases()]
