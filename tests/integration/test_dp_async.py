"""Privileged tier: dp-async with dynamic step assignment on two capped devices (netns + cgroups)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from testbed.controller.experiment import run_experiment
from testbed.emulation.cleanup import find
from testbed.metrics.run_dir import read_summary
from testbed.spec.load import parse_spec

pytestmark = [
    pytest.mark.privileged,
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces, cgroups)"),
]

STEPS = 200


def test_dynamic_assignment_runs_exactly_s_steps_and_the_fast_device_takes_more(
    tmp_path: Path,
) -> None:
    raw = {
        "name": "dp-dynamic",
        "model": {"name": "eight-layer", "width": 0.5},  # conv-heavy: CPU-bound steps
        "algorithm": {"name": "bp"},
        "training": {"batch_size": 32, "lr": 1e-3, "iterations": STEPS, "eval_every": STEPS,
                     "log_every": 10, "eval_samples": 200, "threads": 1},
        "job": {"mode": "dp-async", "replicas": 2, "store": {"target_staleness": 1000}},
        "cluster": {"devices": [{"name": "slow", "cpus": 0.25, "memory": "2g"},
                                {"name": "fast", "cpus": 1.0, "memory": "2g"}]},
    }  # fmt: skip
    run = run_experiment(parse_spec(raw), tmp_path, progress=False)
    s = read_summary(run.path)
    assert s["status"] == "completed"
    events = [json.loads(x) for x in (run.path / "events.jsonl").read_text().splitlines()]
    devices = next(e for e in events if e["event"] == "workers_planned")["devices"]
    assert devices == {"ps": "fast", "replica0": "slow", "replica1": "fast"}  # PS on the fastest
    slow, fast = s["workers"]["replica0"]["step"], s["workers"]["replica1"]["step"]
    assert slow + fast == STEPS  # exactly S steps, none twice (nothing is stale at this limit)
    evals = [json.loads(x) for x in (run.path / "metrics.jsonl").read_text().splitlines()]
    assert max(e["step"] for e in evals if e["kind"] == "eval") == STEPS  # the PS applied S
    ratio = fast / slow
    speed = {k: s["workers"][k]["steady"]["it_s"] for k in ("replica0", "replica1")}
    faster = speed["replica1"] / speed["replica0"]
    print(f"fast {fast} steps, slow {slow} steps: {ratio:.2f}x; step rates {faster:.2f}x")
    # 1.0 vs 0.25 CPU: ~4x on a quiet host, less the PS's share of the fast device and less
    # again when other work takes the host's CPUs from the fast device (a cap, not a reservation)
    assert faster >= 1.5, speed
    # dynamic assignment: the fast device took more of the S steps (a fixed split gives 1.0
    # whatever the speeds). Not compared with the steady rates: those leave out each replica's
    # start (tracing at 0.25 CPU takes the slow one longer), so the step ratio runs above them
    # (4.0 steps vs 2.9 steady on CI's host); how close the split follows speed is the planner
    # bench's to measure.
    assert 0 < slow and ratio >= 1.5, (slow, fast, speed)
    assert not find(run.run_id)
