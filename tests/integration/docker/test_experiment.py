"""Docker tier: a 2-device smoke experiment through `testbed run`, workers inside capped containers.

The controller picks the docker backend from the spec's cluster; this checks the run's summary
(backend, fidelity, the probed link, caps) and that no labelled container or network is left.
The working tree's package is mounted over the image's copy (TESTBED_DOCKER_MOUNT_SOURCE=1).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from testbed.emulation.docker import cleanup as docker_cleanup
from testbed.emulation.docker.backend import connect

pytestmark = [pytest.mark.docker, pytest.mark.slow]

SPEC: dict[str, Any] = {
    "name": "docker-smoke",
    "description": "four-layer SG on two capped containers joined by a 100 Mbit link",
    "model": {"name": "four-layer", "split_after": ["fc1"]},
    "data": {"dataset": "mnist"},
    "algorithm": {"name": "sg", "sg": {"conditioned": True, "depth": 0, "width": 64, "lr": 3e-3}},
    "training": {
        "batch_size": 64,
        "optimizer": "adam",
        "lr": 1e-3,
        "iterations": 40,
        "eval_every": 40,
        "eval_samples": 500,
        "seed": 0,
        "threads": 1,
    },
    "job": {"mode": "sg", "startup_timeout_s": 300},
    "cluster": {
        "backend": "docker",
        "devices": [
            {"name": "a", "profile": "edge", "cpus": 0.6, "memory": "1g"},
            {"name": "b", "profile": "edge", "cpus": 0.6, "memory": "1g"},
        ],
        "links": [{"device": "a", "rate": "100mbit"}],
    },
    "placement": {"0": "a", "1": "b"},
}


@pytest.fixture(scope="module")
def engine() -> Any:
    try:
        client = connect(timeout_s=30)
        client.images.get("testbed-worker:amd64")
    except Exception as error:  # noqa: BLE001 - no engine, or no image: same remedy
        if os.environ.get("TESTBED_REQUIRE_DOCKER") == "1":
            pytest.fail(f"docker tier unavailable: {error} (TESTBED_REQUIRE_DOCKER=1)")
        pytest.skip(f"docker tier unavailable: {error}; see .ci/docker.sh")
    return client


def _testbed_run(
    spec: dict[str, Any], tmp_path: Path, results: Path, **env: str
) -> subprocess.CompletedProcess[str]:
    """`testbed run` of spec in a fresh process, results under `results`."""
    spec_path = tmp_path / f"{spec['name']}.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    return subprocess.run(
        [sys.executable, "-m", "testbed", "run", str(spec_path), "--no-progress"],
        env={**os.environ, "TESTBED_RESULTS": str(results), **env},
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip


def test_smoke_experiment_in_containers(engine: Any, tmp_path: Path) -> None:
    results = tmp_path / "results"
    run = _testbed_run(SPEC, tmp_path, results, TESTBED_DOCKER_MOUNT_SOURCE="1")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    (summary_path,) = results.glob("docker-smoke/*/summary.json")
    cluster = json.loads(summary_path.read_text())["cluster"]
    assert cluster["backend"] == "docker" and cluster["fidelity_level"] == "full"
    assert cluster["devices"]["a"]["cpus"] == 0.6
    probes = cluster["fidelity"]["probes"]
    assert probes and all(abs(p["ratio"] - 1) <= 0.05 for p in probes), probes
    run_id = summary_path.parent.name
    assert docker_cleanup.find(run_id, engine) == ([], [])


@pytest.fixture()
def standing_stack(engine: Any, tmp_path: Path) -> Any:
    """Two running device containers labelled as a compose stack would label them, made here
    (with the run's results and data directories and this tree's package mounted)."""
    from testbed.emulation.docker.devices import container_options, data_dir, volumes
    from testbed.emulation.profiles import ResolvedDevice

    stack = f"tbtest{os.getpid()}"
    results = tmp_path / "results"
    results.mkdir()
    network = engine.networks.create(f"{stack}_testbed", labels={"testbed.stack": stack})
    containers = []
    try:
        for name in ("a", "b"):
            device = ResolvedDevice(name, "edge", 0.6, 1024**3, "amd64", 0)
            options = container_options(
                device, run_id=stack, name=f"{stack}-{name}", image="testbed-worker:amd64",
                network=network.name, mounts=volumes([results, data_dir()], source=True),
                gpu_ids=[],
            )  # fmt: skip
            options["labels"] = {"testbed.stack": stack, "testbed.device": name}
            containers.append(engine.containers.run(**options))
        yield stack, results, containers
    finally:
        for container in containers:
            container.remove(force=True)
        network.remove()


def test_experiment_on_a_standing_stack_leaves_its_containers_running(
    engine: Any, standing_stack: Any, tmp_path: Path
) -> None:
    from testbed.emulation.agents.docker_tc import plans_to_json
    from testbed.emulation.config import LinkSettings
    from testbed.emulation.shaping import egress_plan

    stack, results, containers = standing_stack
    stale = plans_to_json(egress_plan(LinkSettings(rate="5mbit"), []), None)
    shaped = containers[1].exec_run(
        ["python3", "-m", "testbed.emulation.agents.docker_tc", "apply", stale], user="root"
    )
    assert shaped.exit_code == 0, shaped.output  # as a crashed run would leave device b
    spec = {**SPEC, "name": "docker-stack-smoke"}
    spec["cluster"] = {**SPEC["cluster"], "stack": stack}
    run = _testbed_run(spec, tmp_path, results)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    (summary_path,) = results.glob("docker-stack-smoke/*/summary.json")
    summary = json.loads(summary_path.read_text())
    assert summary["status"] == "completed" and summary["final_test_accuracy"] > 0.3
    cluster = summary["cluster"]
    assert cluster["backend"] == "docker" and cluster["fidelity_level"] == "full"
    assert any(f"stack {stack!r}" in note for note in cluster["fidelity"]["notes"])
    probes = cluster["fidelity"]["probes"]
    assert probes and all(abs(p["ratio"] - 1) <= 0.05 for p in probes), probes
    for container in containers:  # still up, unshaped (b's stale 5 Mbit too), running nothing
        container.reload()
        assert container.status == "running"
        rates = container.exec_run(
            ["python3", "-m", "testbed.emulation.agents.docker_tc", "rates"], user="root"
        )
        assert json.loads(rates.output.decode().splitlines()[-1]) == {"eth0": {}, "ifb0": {}}
        commands = [row[-1] for row in container.top(ps_args="-eo pid,args")["Processes"]]
        assert not [c for c in commands if "testbed" in c and "docker_tc" not in c], commands


def test_a_stack_that_lacks_a_device_is_refused_by_name(
    engine: Any, standing_stack: Any, tmp_path: Path
) -> None:
    stack, results, _ = standing_stack
    spec = {**SPEC, "name": "docker-stack-missing"}
    devices = [*SPEC["cluster"]["devices"], {"name": "c", "profile": "edge"}]
    spec["cluster"] = {**SPEC["cluster"], "stack": stack, "devices": devices}
    run = _testbed_run(spec, tmp_path, results)
    assert run.returncode != 0
    said = " ".join((run.stdout + run.stderr).split())  # the console wraps long lines
    assert f"device 'c': expected 1 running container labelled testbed.stack={stack}" in said
