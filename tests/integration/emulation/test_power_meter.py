"""Privileged tier: the emulated power meter on real cgroups integrates a busy loop as the model says."""

from __future__ import annotations

import os
import sys
import time

import pytest

from testbed.emulation.cleanup import find
from testbed.emulation.config import ClusterSpec
from testbed.emulation.local.backend import LocalBackend
from testbed.emulation.meter import PowerMeter

pytestmark = [
    pytest.mark.privileged,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (cgroups, network namespaces)"),
]

BUSY = [sys.executable, "-c", "while True: pass"]
SECONDS = 3.0


def test_meter_integrates_a_busy_loop_in_a_capped_device() -> None:
    spec = ClusterSpec.model_validate({"devices": [
        {"name": "busy", "profile": "cloud", "cpus": 0.5, "power": {"idle_w": 2, "busy_w": 12}},
        {"name": "idle", "profile": "cloud", "cpus": 0.5, "power": {"idle_w": 3, "busy_w": 9}},
    ]})  # fmt: skip
    run_id = f"test-meter-{os.getpid()}"
    points: list[tuple[str, dict[str, float]]] = []
    with LocalBackend(run_id).up(spec) as handle:
        meter = PowerMeter(handle.meter_targets(), lambda d, f: points.append((d, f)))
        with meter:
            loop = handle.spawn("busy", BUSY)
            time.sleep(0.5)  # past the interpreter's start
            meter.mark("start")
            time.sleep(SECONDS)
            meter.mark("end")
            loop.kill()
            loop.wait()
        summary = meter.summary("start", "end")
    assert not find(run_id)
    busy, idle = summary["devices"]["busy"], summary["devices"]["idle"]
    seconds = busy["seconds"]
    assert seconds == pytest.approx(SECONDS, rel=0.05)
    # a busy loop uses its whole quota: P = P_idle + (P_busy - P_idle) x 1.0 of the quota
    assert busy["cpu_s"] / seconds == pytest.approx(0.5, rel=0.05)  # the cap holds
    assert busy["energy_j"] == pytest.approx((2 + (12 - 2) * 1.0) * seconds, rel=0.05)
    assert idle["energy_j"] == pytest.approx(3 * seconds, rel=0.05)
    rate = busy["samples"] / (seconds + 0.5)
    assert rate >= 9.5, f"sampled at {rate:.1f} Hz; expected >= 10"
    busy_points = [f for d, f in points if d == "busy"]
    assert busy_points and max(f["power_w"] for f in busy_points) == pytest.approx(12, rel=0.05)
