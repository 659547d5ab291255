"""Docker tier: Swarm for real. `docker swarm init` on this engine, `docker stack deploy` of the
compose file (through docker/stack-file.py: Docker 20.10's stack deploy rejects `profiles:`), and
the default experiment, run by the stack's controller task, adopts the stack's device tasks.

The engine is left as found: the stack is removed, the swarm left, and the networks and volumes
the swarm made are removed. An engine that is already part of a swarm is not touched (skip).
A second engine in its own network namespace as a second node is not attempted here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed.data.cache import data_dir
from testbed.paths import PROJECT_ROOT
from testbed.testing.victoria import binary as victoria_binary
from testbed.testing.victoria import free_port

pytestmark = [pytest.mark.docker, pytest.mark.slow]

IMAGES = ("testbed-worker:amd64", "testbed-ps:amd64", "testbed-base:bookworm-amd64")
RUN_TIMEOUT_S = 900


def _require(reason: str) -> None:
    if os.environ.get("TESTBED_REQUIRE_DOCKER") == "1":
        pytest.fail(f"{reason} (TESTBED_REQUIRE_DOCKER=1)")
    pytest.skip(reason)


def docker(*args: str, check: bool = True, timeout: float = 300) -> str:
    out = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and out.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)}: {out.stderr.strip()}")
    return out.stdout


def _advertise_address() -> str:
    route = subprocess.run(["ip", "-4", "route", "get", "1.1.1.1"], capture_output=True, text=True).stdout.split()
    return route[route.index("src") + 1] if "src" in route else "127.0.0.1"


@pytest.fixture
def swarm() -> Iterator[None]:
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        _require("no Docker engine answers")
    for image in IMAGES:
        if subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode != 0:
            _require(f"image {image} missing: run docker/build-images.sh --arch amd64")
    if victoria_binary() is None or not (data_dir() / "mnist.npz").is_file():
        _require("victoria-metrics and the cached MNIST are needed (apt-get install victoria-metrics; make data)")
    state = docker("info", "--format", "{{.Swarm.LocalNodeState}}").strip()
    if state != "inactive":
        pytest.skip(f"this engine is already in a swarm ({state}); the test leaves such an engine alone")
    networks_before = set(docker("network", "ls", "-q").split())
    docker("swarm", "init", "--advertise-addr", _advertise_address())
    try:
        yield
    finally:
        docker("swarm", "leave", "--force", check=False)
        for net in set(docker("network", "ls", "-q").split()) - networks_before:
            docker("network", "rm", net, check=False)  # docker_gwbridge, ingress: made by the swarm


def test_stack_deploy_runs_the_default_experiment_on_the_stacks_tasks(swarm: None, tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    stack = f"tbswarm{uuid.uuid4().hex[:6]}"
    stack_file = tmp_path / "stack.yml"
    rendered = subprocess.run([sys.executable, str(PROJECT_ROOT / "docker" / "stack-file.py"),
                               "-f", str(PROJECT_ROOT / "docker-compose.yml"),
                               "-f", str(PROJECT_ROOT / "docker-compose.victoria.yml")],
                              capture_output=True, text=True, check=True)
    stack_file.write_text(rendered.stdout)
    env = {**os.environ, "TESTBED_RESULTS_VOLUME": str(results), "TESTBED_DATA": str(data_dir()),
           "DASHBOARD_PORT": str(free_port()), "INFLUX_PORT": str(free_port()),
           "VICTORIA_METRICS_BIN": str(victoria_binary()), "TESTBED_ARCH": "amd64"}
    deploy = subprocess.run(["docker", "stack", "deploy", "--resolve-image", "never", "-c", str(stack_file), stack],
                            capture_output=True, text=True, env=env, timeout=300)
    try:
        assert deploy.returncode == 0, deploy.stderr
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while not list(results.glob("four-layer-sg-stack/*/summary.json")) and time.monotonic() < deadline:
            time.sleep(2)  # polling the results folder for the run's summary, not a readiness guess
        services = docker("stack", "services", stack, "--format", "{{.Name}} {{.Replicas}}")
        logs = docker("service", "logs", "--raw", f"{stack}_controller", check=False, timeout=60)
        summaries = [json.loads(p.read_text()) for p in results.glob("four-layer-sg-stack/*/summary.json")]
        assert summaries, f"no summary within {RUN_TIMEOUT_S} s; services:\n{services}\ncontroller:\n{logs[-4000:]}"
        summary = summaries[0]
        assert summary["status"] == "completed", logs[-4000:]
        cluster = summary["cluster"]
        assert cluster["backend"] == "docker" and cluster["fidelity_level"] == "full"
        assert set(cluster["devices"]) == {"edge1", "edge2", "edge3", "edge4", "ps"}
        assert any("stack 'testbed'" in note for note in cluster["fidelity"]["notes"])
        tasks = docker("ps", "--filter", f"label=com.docker.stack.namespace={stack}", "--format", "{{.Names}}")
        assert f"{stack}_edge1." in tasks  # the devices were the stack's own swarm tasks
    finally:
        docker("stack", "rm", stack, check=False)
        deadline = time.monotonic() + 120
        while docker("ps", "-aq", "--filter", f"label=com.docker.stack.namespace={stack}").strip():
            if time.monotonic() > deadline:
                break
            time.sleep(1)  # polling until the stack's containers are gone
        for volume in docker("volume", "ls", "-q", "--filter", f"label=com.docker.stack.namespace={stack}").split():
            docker("volume", "rm", volume, check=False)
    assert not docker("ps", "-aq", "--filter", f"label=com.docker.stack.namespace={stack}").strip()
