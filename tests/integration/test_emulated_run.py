"""Privileged tier: distributed runs inside local-backend devices (netns + cgroup + tc)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from testbed.controller.experiment import run_experiment
from testbed.controller.workers import WorkerFailedError
from testbed.emulation.cleanup import find
from testbed.emulation.fidelity import FULL
from testbed.metrics.run_dir import read_summary
from testbed.spec.load import parse_spec

pytestmark = [
    pytest.mark.privileged,
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces, cgroups, tc)"),
]

TOLERANCE = 0.05


def _raw(iterations: int) -> dict[str, Any]:
    return {
        "name": "emulated-sg",
        "model": {"name": "four-layer", "split_after": ["conv1"], "width": 0.5},
        "algorithm": {"name": "sg", "sg": {"lr": 3.0e-3}},
        "training": {
            "batch_size": 32,
            "lr": 1.0e-3,
            "iterations": iterations,
            "eval_every": iterations,
            "log_every": 5,
            "eval_samples": 500,
            "threads": 1,
        },
        "job": {"mode": "sg"},
        "cluster": {
            "devices": [
                {"name": "dev0", "cpus": 0.9, "memory": "2g",
                 "power": {"idle_w": 1.0, "busy_w": 5.0, "radio": "wifi"}},
                {"name": "dev1", "cpus": 0.9, "memory": "2g"},
            ],
            "links": [{"device": "dev0", "rate": "20mbit"}],
            "schedule": [{"at_s": 0.0, "device": "dev0", "rate": "50mbit"}],
        },
        "placement": {"0": "dev0", "1": "dev1"},
    }


def _events(run_path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_path / "events.jsonl").read_text().splitlines()]


def test_sg_run_in_namespaces_records_fidelity_links_and_leaves_nothing(tmp_path: Path) -> None:
    run = run_experiment(parse_spec(_raw(30)), tmp_path, progress=False)
    s = read_summary(run.path)
    assert s["status"] == "completed"
    assert s["fidelity_level"] == FULL and s["cluster"]["fidelity_level"] == FULL
    (probe,) = s["cluster"]["fidelity"]["probes"]
    assert probe["configured_bps"] == 20_000_000
    assert abs(probe["ratio"] - 1) <= TOLERANCE, probe
    assert set(s["cluster"]["resource_events"]) == {"dev0", "dev1"}
    assert s["cluster"]["resource_events"]["dev0"]["oom_kills"] == 0
    assert [a["settings"]["rate"] for a in s["cluster"]["schedule_applied"]] == ["50mbit"]
    links = {(r["src"], r["dst"]): r for r in s["links"]}
    assert links[("dev0", "dev1")]["wire_bytes_per_step"] > 0
    assert links[("dev0", "dev1")]["configured_bps"] == 50_000_000  # after the schedule
    addresses = next(e for e in _events(run.path) if e["event"] == "workers_ready")["addresses"]
    assert addresses["dev0"].startswith("10.") and addresses["dev1"].startswith("10.")
    assert not find(run.run_id), "the run left labelled resources behind"
    _check_power(run.path, s)


def _check_power(run_path: Path, s: dict[str, Any]) -> None:
    """dev0's energy is its model over its measured utilisation and link bytes (WiFi J/bit)."""
    from testbed.emulation.power import RADIOS

    power = s["power"]
    dev0, dev1 = power["devices"]["dev0"], power["devices"]["dev1"]
    assert "model" in power["kind"] and "energy_j" not in dev1  # dev1 has no power model
    assert dev0["tx_bytes"] > 30 * 32 * 14 * 14 * 16 * 4  # 30 activations of 32x14x14x16 float32
    tx, rx = RADIOS["wifi"]
    radio_j = 8 * (tx * dev0["tx_bytes"] + rx * dev0["rx_bytes"])
    util = min(1.0, dev0["utilisation"])
    expected = (1.0 + 4.0 * util) * dev0["seconds"] + radio_j
    assert dev0["energy_j"] == pytest.approx(expected, rel=0.05)
    assert power["energy_j"] == dev0["energy_j"]
    assert power["edp_js"] == pytest.approx(power["energy_j"] * power["seconds"])
    points = [json.loads(line) for line in (run_path / "metrics.jsonl").read_text().splitlines()]
    dev0_power = [p for p in points if p["kind"] == "power" and p["device"] == "dev0"]
    assert dev0_power and all(p["meter"] == "model" for p in dev0_power)
    for p in dev0_power:  # each point: the model at the interval's mean utilisation and bit rates
        model_w = 1.0 + 4.0 * p["utilisation"] + tx * p["tx_bps"] + rx * p["rx_bps"]
        assert p["power_w"] == pytest.approx(model_w, rel=0.05)


def test_killed_worker_fails_the_run_and_leaves_nothing(tmp_path: Path) -> None:
    def kill_when_training() -> None:
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            for stream in tmp_path.glob("*/*/workers/dev1.metrics.jsonl"):
                if '"kind": "worker"' in stream.read_text():
                    ready = json.loads((stream.parent / "dev1.ready.json").read_text())
                    os.kill(ready["pid"], signal.SIGKILL)
                    return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_when_training, daemon=True)
    killer.start()
    with pytest.raises(WorkerFailedError, match=r"worker 'dev1' \(pid \d+\) was killed by SIGKILL"):
        run_experiment(parse_spec(_raw(100_000)), tmp_path, progress=False)
    killer.join()
    run_path = next(tmp_path.glob("*/*/summary.json")).parent
    assert read_summary(run_path)["status"] == "failed"
    assert not find(run_path.name), "the failed run left labelled resources behind"


def test_sigint_to_the_controller_interrupts_and_leaves_nothing(tmp_path: Path) -> None:
    spec_path = tmp_path / "emulated.yaml"
    spec_path.write_text(yaml.safe_dump(_raw(100_000)))
    results = tmp_path / "results"
    argv = [sys.executable, "-m", "testbed", "run", str(spec_path), "--results", str(results),
            "--no-progress"]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 150
        def started() -> bool:
            streams = results.glob("*/*/events.jsonl")
            return any("training_started" in e.read_text() for e in streams)

        while not started():
            assert proc.poll() is None and time.monotonic() < deadline, "run never started training"
            time.sleep(0.05)
        run_path = next(results.glob("*/*/events.jsonl")).parent
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:  # the test failed early: still let the controller clean up
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    summary = read_summary(run_path)
    assert (summary["status"], summary["reason"]) == ("interrupted", "Ctrl-C")
    assert not find(run_path.name), "the interrupted run left labelled resources behind"


def test_units_are_profiled_inside_a_capped_device() -> None:
    from testbed.planner.device_profile import profile_on_device

    raw = _raw(1)
    raw["cluster"] = {"backend": "local", "devices": [
        {"name": "small", "profile": "edge", "cpus": 0.5, "memory": "1g"},
        {"name": "other", "profile": "edge", "cpus": 0.5}]}
    raw["placement"] = {"0": "small", "1": "other"}
    out = profile_on_device(parse_spec(raw), "small")
    assert out["device"] == "small" and out["fidelity_level"] == FULL
    units = ["conv1_conv1", "conv1_pool", "fc1", "fc2", "fc3"]  # one unit per layer
    assert out["units"] == units
    assert len(out["unit_s"]) == len(units) and all(t > 0 for t in out["unit_s"])
    assert len(out["sg_s"]) == len(units) - 1
    left = find(out["run_id"])  # the one-device cluster came down
    assert (left.netns, left.links, left.cgroups) == ([], [], [])
