"""`testbed cluster` on the docker backend, through the real CLI and holder: a program runs in the
device's container under its CPU cap, its status comes back, a link is reshaped inside the
container, and `down` leaves no container or network labelled with the cluster's run id."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from testbed.emulation.docker import cleanup as docker_cleanup

pytestmark = pytest.mark.docker

NAME = f"dock{os.getpid()}"
SPEC = {
    "name": NAME, "model": {"name": "four-layer"}, "algorithm": {"name": "sg"},
    "training": {"iterations": 10}, "job": {"mode": "sg"},
    "cluster": {"backend": "docker", "devices": [{"name": "a", "cpus": 0.5, "memory": "512m"}],
                "links": [{"device": "a", "rate": "10mbit"}]},
}


def run_cli(results: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TESTBED_RESULTS": str(results), "TESTBED_DOCKER_MOUNT_SOURCE": "1"}
    return subprocess.run([sys.executable, "-m", "testbed", *args], capture_output=True, text=True,
                          timeout=300, env=env)


def test_cluster_exec_shape_and_down_in_containers(tmp_path: Path) -> None:
    if subprocess.run(["docker", "image", "inspect", "testbed-worker:amd64"], capture_output=True).returncode:
        if os.environ.get("TESTBED_REQUIRE_DOCKER") == "1":
            pytest.fail("image testbed-worker:amd64 missing (TESTBED_REQUIRE_DOCKER=1)")
        pytest.skip("no engine or image testbed-worker:amd64 missing: run docker/build-images.sh")
    spec, results = tmp_path / "spec.yaml", tmp_path / "results"
    spec.write_text(yaml.safe_dump(SPEC))
    up = run_cli(results, "cluster", "up", str(spec))
    try:
        assert up.returncode == 0, up.stderr + up.stdout
        quota = run_cli(results, "cluster", "exec", "a", "--", "sh", "-c",
                        "cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null || cut -d' ' -f1 /sys/fs/cgroup/cpu.max; exit 4")
        assert quota.returncode == 4 and quota.stdout.split() == ["50000"], quota.stdout + quota.stderr
        assert run_cli(results, "cluster", "shape", "a", "rate=5mbit").returncode == 0
        classes = run_cli(results, "cluster", "exec", "a", "--", "tc", "class", "show", "dev", "eth0").stdout
        assert "root rate 5Mbit" in classes and "10Mbit" not in classes
    finally:
        down = run_cli(results, "cluster", "down", "--name", NAME)
    assert down.returncode == 0 and f"cluster {NAME} is down" in down.stdout
    assert docker_cleanup.find(f"cluster-{NAME}") == ([], [])
