"""Fast tier of the docker backend: spec -> container options, argv mapping, plans, shim, compose."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from testbed.emulation.agents import agent_argv
from testbed.emulation.agents.docker_exec import reraise
from testbed.emulation.agents.docker_shim import exit_status
from testbed.emulation.agents.docker_tc import plan_from_dict, plan_to_dict
from testbed.emulation.config import LinkSettings
from testbed.emulation.docker.backend import docker_notes
from testbed.emulation.docker.devices import (
    CONTAINER_PACKAGE,
    HOST_PACKAGE,
    RUN_LABEL,
    clamp_cpus,
    container_argv,
    container_env,
    container_options,
    hidden_paths,
    labels,
    volumes,
)  # fmt: skip
from testbed.emulation.docker.images import image_for
from testbed.emulation.profiles import ResolvedDevice
from testbed.emulation.shaping import device_egress, egress_plan
from testbed.paths import PROJECT_ROOT

REPO = PROJECT_ROOT
SHIM = agent_argv("docker_shim")
GIB = 1024**3


def _device(name: str = "e1", cpus: float | None = 1.0, memory: int | None = GIB,
            arch: str = "amd64", gpus: int = 0) -> ResolvedDevice:  # fmt: skip
    return ResolvedDevice(name, "edge", cpus, memory, arch, gpus)


def _options(device: ResolvedDevice, gpu_ids: list[int] | None = None) -> dict[str, object]:
    return container_options(
        device, run_id="r1", name=f"tb-abc123-r1-{device.name}", image="testbed-worker:amd64",
        network="tb-abc123-r1", mounts=volumes(["/tmp"]), gpu_ids=gpu_ids or [],
    )  # fmt: skip


def test_edge_device_becomes_a_capped_labelled_container() -> None:
    options = _options(_device())
    assert options["nano_cpus"] == 10**9
    assert options["mem_limit"] == options["memswap_limit"] == GIB
    assert options["cap_add"] == ["NET_ADMIN"]
    assert options["labels"] == {RUN_LABEL: "r1", "testbed.kind": "device", "testbed.device": "e1"}
    assert options["network"] == "tb-abc123-r1" and options["init"] is True
    assert options["volumes"] == {"/tmp": {"bind": "/tmp", "mode": "rw"}}
    assert "device_requests" not in options


def test_uncapped_device_sets_no_limits_and_gpus_become_device_requests() -> None:
    options = _options(_device(cpus=None, memory=None, gpus=1), gpu_ids=[3])
    assert "nano_cpus" not in options and "mem_limit" not in options
    (request,) = options["device_requests"]  # type: ignore[misc]
    assert request["DeviceIDs"] == ["3"] and request["Capabilities"] == [["gpu"]]


def test_fractional_cpus_and_cap_at_engine_cpus() -> None:
    assert _options(_device(cpus=0.4))["nano_cpus"] == 400_000_000
    devices = clamp_cpus({"j": _device("j", cpus=4.0), "e": _device("e", cpus=0.5)}, 2)
    assert (
        devices["j"].cpus == 2.0 and "asks for 4 CPUs but the engine has 2" in devices["j"].notes[0]
    )
    assert devices["e"].cpus == 0.5 and not devices["e"].notes


def test_source_mount_is_read_only_over_the_image_copy() -> None:
    mounts = volumes([], source=True)
    assert mounts == {str(HOST_PACKAGE): {"bind": CONTAINER_PACKAGE, "mode": "ro"}}


def test_host_argv_maps_to_the_image() -> None:
    probe = str(HOST_PACKAGE / "emulation" / "agents" / "probe_agent.py")
    assert container_argv([sys.executable, "-I", probe, "sink", "10.0.0.1"]) == [
        "python3", "-I", f"{CONTAINER_PACKAGE}/emulation/agents/probe_agent.py", "sink", "10.0.0.1",
    ]  # fmt: skip
    assert container_argv(["sh", "-c", sys.executable]) == ["sh", "-c", sys.executable]


def test_paths_that_the_container_cannot_see_are_named(tmp_path: Path) -> None:
    config = tmp_path / "w.json"
    config.write_text("{}")
    argv = ["python3", "-m", "testbed.runtime.worker", str(config), "/usr/bin/env", "x"]
    assert hidden_paths(argv, volumes([])) == [str(config)]
    assert hidden_paths(argv, volumes([tmp_path])) == []


def test_host_only_variables_stay_outside() -> None:
    env = {"PATH": "/host/venv/bin", "HOME": "/root", "VIRTUAL_ENV": "/v", "PYENV_ROOT": "/p",
           "DOCKER_HOST": "unix:///x", "INFLUX_URL": "http://m:8086", "PYTHONUNBUFFERED": "1"}  # fmt: skip
    assert container_env(env) == {"INFLUX_URL": "http://m:8086", "PYTHONUNBUFFERED": "1"}


def test_images_per_arch_with_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TESTBED_DOCKER_IMAGE_ARM64", raising=False)
    assert image_for("arm64") == "testbed-worker:arm64"
    assert image_for("arm64", {"arm64": "reg/w:1"}) == "reg/w:1"
    monkeypatch.setenv("TESTBED_DOCKER_IMAGE_ARM64", "reg/w:2")
    assert image_for("arm64") == "reg/w:2"


def test_foreign_arch_is_noted_as_qemu() -> None:
    notes = docker_notes({"j": _device("j", arch="arm64"), "e": _device()}, "amd64")
    expected = (
        "device 'j': arm64 image runs under QEMU user emulation on this amd64 engine "
        "(roughly 10x slower than native)"
    )
    assert notes == [expected]


def test_labels_carry_the_run_id() -> None:
    assert labels("run-7", "network") == {RUN_LABEL: "run-7", "testbed.kind": "network"}


def test_shaping_plans_survive_json() -> None:
    netem = LinkSettings(rate="10mbit", delay="5ms", loss="1%")
    links = {("a",): LinkSettings(rate="100mbit"), ("a", "b"): netem}
    plan = device_egress(links, "a", {"a": "10.0.0.1", "b": "10.0.0.2"})
    assert plan is not None and plan_from_dict(plan_to_dict(plan)) == plan
    assert plan_from_dict(plan_to_dict(egress_plan(None, []))) is None


def test_target_requirements_pick_the_tensorflow_wheel_per_arch() -> None:
    def pins(arch: str) -> list[str]:
        script = REPO / "docker" / "target-requirements.py"
        lock = REPO / "requirements" / "worker.lock"
        out = subprocess.run([sys.executable, str(script), arch, str(lock)],
                             check=True, capture_output=True, text=True).stdout  # fmt: skip
        assert all(" --hash=sha256:" in line for line in out.splitlines())  # pip --require-hashes
        return [line.split(" ")[0] for line in out.splitlines() if line.startswith("tensorflow")]

    assert pins("amd64") == ["tensorflow-cpu==2.21.0"]
    assert pins("arm64") == ["tensorflow==2.21.0"]


def test_exit_status_mapping() -> None:
    assert exit_status(0) == 0 and exit_status(3) == 3 and exit_status(-9) == 137
    assert reraise(3) == 3


def _shim(*argv: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*SHIM, "--", *argv],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_shim_passes_the_exit_code_through() -> None:
    proc = _shim("sh", "-c", "echo hi; exit 3")  # stdin stays open: the relay is alive
    assert proc.stdout is not None and proc.stdout.read() == "hi\n"
    assert proc.wait(timeout=30) == 3
    assert proc.stdin is not None
    proc.stdin.close()


def test_shim_stops_its_program_when_stdin_closes() -> None:
    proc = _shim(sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)")
    assert proc.stdout is not None and proc.stdout.readline() == "up\n"
    started = time.monotonic()
    assert proc.stdin is not None
    proc.stdin.close()  # what a stopped or killed host relay looks like from inside
    assert proc.wait(timeout=20) == 128 + signal.SIGTERM
    assert time.monotonic() - started < 10


def test_shim_forwards_sigterm() -> None:
    proc = _shim(sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)")
    assert proc.stdout is not None and proc.stdout.readline() == "up\n"
    proc.terminate()
    assert proc.wait(timeout=20) == 128 + signal.SIGTERM


@pytest.mark.skipif(not shutil.which("docker-compose"), reason="docker-compose (v1) not installed")
def test_compose_file_is_valid() -> None:
    env = {**os.environ, "EXPERIMENT": "four-layer-sg"}
    command = ["docker-compose", "-f", str(REPO / "docker-compose.yml"), "config", "-q"]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
