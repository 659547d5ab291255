"""An emulated run without root degrades clearly: loopback processes, no probe, level recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from testbed.controller.experiment import run_experiment
from testbed.emulation.fidelity import DEGRADED_NO_ROOT
from testbed.emulation.local import backend as local
from testbed.metrics.run_dir import read_summary
from testbed.spec.load import parse_spec

pytestmark = pytest.mark.slow


def test_without_root_the_run_completes_degraded_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local.os, "geteuid", lambda: 1000)  # LocalBackend sees no root
    raw = {
        "name": "degraded-sg",
        "model": {"name": "four-layer", "split_after": ["conv1"], "width": 0.5},
        "algorithm": {"name": "sg", "sg": {"lr": 3.0e-3}},
        "training": {"batch_size": 32, "iterations": 20, "eval_every": 20, "log_every": 5,
                     "eval_samples": 500, "threads": 1},
        "job": {"mode": "sg"},
        "cluster": {"devices": [{"name": "a", "cpus": 0.5, "power": {"idle_w": 1, "busy_w": 3}},
                                {"name": "b", "cpus": 0.5}],
                    "links": [{"device": "a", "rate": "100mbit"}]},
    }  # fmt: skip
    run = run_experiment(parse_spec(raw), tmp_path, progress=False)
    s = read_summary(run.path)
    assert s["status"] == "completed"
    assert s["fidelity_level"] == DEGRADED_NO_ROOT
    assert "not shaped" in s["cluster"]["fidelity"]["probe_skipped"]
    assert any("no root" in note for note in s["cluster"]["fidelity"]["notes"])
    assert {r["configured_bps"] for r in s["links"] if r["src"] == "a"} == {100_000_000}
    events = [json.loads(x) for x in (run.path / "events.jsonl").read_text().splitlines()]
    ready = next(e for e in events if e["event"] == "workers_ready")["addresses"]
    assert all(a.startswith("127.0.0.1:") for a in ready.values())
    # the power meter reads the device's processes from /proc (no cgroup, no link counters)
    a = s["power"]["devices"]["a"]
    assert a["cpu_s"] > 0 and a["tx_bytes"] == 0
    # P = 1 W + 2 W x utilisation, each 0.1 s sample's utilisation clipped to 1: without root
    # the device is not capped, so samples above its quota are clipped and the energy sits at
    # or below the mean utilisation's (Jensen), and well above idle
    util, seconds = min(1.0, a["utilisation"]), a["seconds"]
    busy = a["energy_j"] - 1.0 * seconds
    assert 0.5 * 2 * util * seconds <= busy <= 2 * util * seconds * 1.01, (a, busy)
    assert any("power meter" in note for note in s["cluster"]["fidelity"]["notes"])
