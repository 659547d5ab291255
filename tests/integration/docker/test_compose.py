"""Docker tier: `docker compose up --build` from the repository runs the default experiment.

The compose file builds both images from the top-level Dockerfile (here on the Debian-made base
and the wheelhouse in docker/wheels/ that docker/build-images.sh leaves: this host has no image
registry), starts InfluxDB (VictoriaMetrics here), ps, edge1..edge4 and the controller, and the
controller runs four-layer-sg-stack on the stack's own device containers, without QEMU (the
jetson service is behind its profile). The run must complete; `down -v` removes everything.
Compose v2 (`docker compose`) is used where present, else v1 (`docker-compose`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
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

BASE = "testbed-base:bookworm-amd64"
RUN_TIMEOUT_S = 900


def _require(reason: str) -> None:
    if os.environ.get("TESTBED_REQUIRE_DOCKER") == "1":
        pytest.fail(f"{reason} (TESTBED_REQUIRE_DOCKER=1)")
    pytest.skip(reason)


def compose_command() -> list[str] | None:
    """`docker compose` (v2) where the plugin answers, else `docker-compose` (v1), else None."""
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else None


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[list[str], dict[str, str], Path]]:
    compose = compose_command()
    if compose is None or subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        _require("no Docker engine or Compose here")
    if subprocess.run(["docker", "image", "inspect", BASE], capture_output=True).returncode != 0:
        _require(f"{BASE} missing: run docker/build-images.sh --arch amd64")
    if not any((PROJECT_ROOT / "docker" / "wheels").glob("*.whl")):
        _require("docker/wheels/ is empty (this host cannot reach PyPI from a build): run docker/build-images.sh")
    if victoria_binary() is None or not (data_dir() / "mnist.npz").is_file():
        _require("victoria-metrics and the cached MNIST are needed (apt-get install victoria-metrics; make data)")
    results = tmp_path / "results"
    results.mkdir()
    project = f"tbcompose{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "COMPOSE_PROJECT_NAME": project, "BASE_IMAGE": BASE, "DOCKER_BUILDKIT": "0",
           "TESTBED_RESULTS_VOLUME": str(results), "TESTBED_DATA": str(data_dir()),
           "DASHBOARD_PORT": str(free_port()), "INFLUX_PORT": str(free_port()),
           "VICTORIA_METRICS_BIN": str(victoria_binary())}
    files = ["-f", "docker-compose.yml", "-f", "docker-compose.victoria.yml"]
    cmd = [*compose, *files]
    try:
        yield cmd, env, results
    finally:
        subprocess.run([*cmd, "down", "-v", "--remove-orphans"], cwd=PROJECT_ROOT, env=env,
                       capture_output=True, timeout=300)
        left = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={project}"],
                              capture_output=True, text=True).stdout.split()
        assert not left, f"containers left after down: {left}"


def _summaries(results: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in results.glob("four-layer-sg-stack/*/summary.json")]


def test_compose_up_build_runs_the_default_experiment(stack: tuple[list[str], dict[str, str], Path]) -> None:
    cmd, env, results = stack
    up = subprocess.run([*cmd, "up", "--build", "-d"], cwd=PROJECT_ROOT, env=env, capture_output=True,
                        text=True, timeout=1800)
    assert up.returncode == 0, up.stderr[-4000:]
    project = env["COMPOSE_PROJECT_NAME"]
    services = subprocess.run(["docker", "ps", "--filter", f"label=com.docker.compose.project={project}",
                               "--format", '{{.Label "com.docker.compose.service"}}'],
                              capture_output=True, text=True).stdout.split()
    assert sorted(services) == ["controller", "edge1", "edge2", "edge3", "edge4", "influxdb", "ps"]  # no gpu, jetson
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not _summaries(results) and time.monotonic() < deadline:
        time.sleep(2)  # polling the results folder for the run's summary, not a readiness guess
    logs = subprocess.run([*cmd, "logs", "--no-color", "controller"], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True).stdout
    summaries = _summaries(results)
    assert summaries, f"no summary.json within {RUN_TIMEOUT_S} s; controller log:\n{logs[-4000:]}"
    summary = summaries[0]
    assert summary["status"] == "completed", logs[-4000:]
    assert summary["scale"] == "smoke" and summary["final_test_accuracy"] > 0.5
    cluster = summary["cluster"]
    assert cluster["backend"] == "docker" and cluster["fidelity_level"] == "full"
    assert set(cluster["devices"]) == {"edge1", "edge2", "edge3", "edge4", "ps"}
    assert not any(d.get("arch") == "arm64" for d in cluster["devices"].values())  # no QEMU
