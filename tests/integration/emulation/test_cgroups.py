"""Privileged tier: CPU and memory caps of the local backend, measured from inside a device."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from testbed.emulation import cgroups
from testbed.emulation.cleanup import find
from testbed.emulation.config import ClusterSpec
from testbed.emulation.handle import ClusterHandle
from testbed.emulation.local.backend import LocalBackend, NamespacedCluster

pytestmark = [
    pytest.mark.privileged,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, cgroups)"),
    pytest.mark.skipif(cgroups.detect_version() is None, reason="no usable cgroup hierarchy"),
]

BUSY = """
import json, os, time
wall0, cpu0 = time.perf_counter(), time.process_time()
while time.perf_counter() - wall0 < 1.5:
    pass
print(json.dumps({"share": (time.process_time() - cpu0) / (time.perf_counter() - wall0),
                  "threads": os.environ.get("OMP_NUM_THREADS")}))
"""

HOG = """
import sys
chunks = []
for i in range(64):  # 8 MiB at a time, touched, up to 512 MiB
    chunks.append(bytearray(8 << 20))
    print(i, flush=True)
"""


@pytest.fixture
def capped() -> Iterator[ClusterHandle]:
    spec = ClusterSpec.model_validate(
        {"devices": [{"name": "half", "cpus": 0.5}, {"name": "small", "memory": "64m"}]}
    )
    run_id = f"test-cg-{os.getpid()}"
    with LocalBackend(run_id).up(spec) as handle:
        yield handle
    assert not find(run_id), "the cluster left labelled resources behind"


def test_half_cpu_device_gets_half_a_core(capped: ClusterHandle) -> None:
    assert isinstance(capped, NamespacedCluster)
    # weigh the group up so that other load on a shared host cannot push it below its quota:
    # the test measures the cap, not the scheduler's fairness
    group = capped.cgroups["half"]
    run_level = cgroups.DeviceCgroup(group.version, {k: p.parent for k, p in group.paths.items()})
    for level in (run_level, group):
        level.set_weight(10_000)
    started = time.perf_counter()
    proc = capped.spawn("half", [sys.executable, "-c", BUSY], stdout=subprocess.PIPE, text=True)
    out, _ = proc.communicate(timeout=30)
    wall = time.perf_counter() - started
    report = json.loads(out)
    print(f"CPU share {report['share']:.3f}")
    assert 0.35 <= report["share"] <= 0.65, f"CPU share {report['share']:.3f} for cpus=0.5"
    assert report["threads"] == "1"
    used = group.cpu_usage_s()  # the group's own account, seen from outside
    assert 0.3 <= used <= 0.5 * wall + 0.1, f"group used {used:.2f} s CPU in {wall:.2f} s"


def test_memory_hog_is_killed_and_reported(capped: ClusterHandle) -> None:
    assert isinstance(capped, NamespacedCluster)
    proc = capped.spawn("small", [sys.executable, "-c", HOG], stdout=subprocess.PIPE, text=True)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL, f"hog exited with {proc.returncode}: {out[-200:]}"
    assert len(out.split()) < 16  # killed near 64 MiB, far from the 512 MiB it wanted
    events = capped.resource_events("small")
    assert events.oom_kills >= 1
    assert events.peak_bytes == 0 or 60 << 20 <= events.peak_bytes <= 64 << 20  # 0: unreported
