"""`testbed cluster` on the local backend, through the real CLI and holder process: programs run
inside a device's namespace and cgroup, exit statuses come back, a link is reshaped in the kernel,
Ctrl-C stops a program, and `down` removes everything, also after the holder was SIGKILLed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from testbed.emulation import cleanup

pytestmark = [
    pytest.mark.privileged,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces, cgroups, tc)"),
]

NAME = f"cli{os.getpid()}"
RUN_ID = f"cluster-{NAME}"
SPEC = {
    "name": NAME, "model": {"name": "four-layer"}, "algorithm": {"name": "sg"},
    "training": {"iterations": 10}, "job": {"mode": "sg"},
    "cluster": {"backend": "local",
                "devices": [{"name": "a", "cpus": 0.5, "memory": "256m"}, {"name": "b", "cpus": 0.5}],
                "links": [{"device": "a", "rate": "10mbit"}, {"device": "b", "rate": "10mbit"}]},
}


def run_cli(results: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TESTBED_RESULTS": str(results)}
    return subprocess.run([sys.executable, "-m", "testbed", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.fixture
def held(tmp_path: Path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    results = tmp_path / "results"
    up = run_cli(results, "cluster", "up", str(spec))
    try:
        assert up.returncode == 0, up.stderr + up.stdout
        yield results, up.stdout
    finally:
        run_cli(results, "cluster", "down", "--name", NAME)
        assert not cleanup.find(RUN_ID), cleanup.find(RUN_ID)


def _tc_classes(device: str) -> str:
    netns = next(n for n in os.listdir("/run/netns") if n.endswith(f"-{RUN_ID}-{device}"))
    return subprocess.run(["ip", "netns", "exec", netns, "tc", "class", "show", "dev", "eth0"],
                          capture_output=True, text=True, check=True).stdout


def test_exec_runs_in_the_device_and_returns_its_status(held) -> None:
    results, shown = held
    address = {r[0]: r[1] for r in map(str.split, shown.splitlines()) if len(r) == 5 and r[0] in ("a", "b")}
    res = run_cli(results, "cluster", "exec", "a", "--", "ip", "-4", "-o", "addr", "show", "dev", "eth0")
    assert res.returncode == 0 and f"inet {address['a']}/" in res.stdout, res.stderr
    res = run_cli(results, "cluster", "exec", "b", "--", "sh", "-c", "cat /proc/self/cgroup; exit 3")
    assert res.returncode == 3
    assert f"/testbed-{RUN_ID}/b" in res.stdout  # the device's cgroup
    res = run_cli(results, "cluster", "exec", "a", "--", sys.executable, "-c",
                  f"import socket; socket.create_connection(('{address['b']}', 9), 5)")
    assert "ConnectionRefusedError" in res.stderr, res.stderr  # b answered (RST): the bridge carries a -> b


def test_shape_changes_the_kernel_rate_and_status_shows_it(held) -> None:
    results, _ = held
    assert "rate 10Mbit" in _tc_classes("a")
    res = run_cli(results, "cluster", "shape", "a", "rate=5mbit")
    assert res.returncode == 0 and "a: rate=5mbit" in res.stdout, res.stderr
    assert "rate 5Mbit" in _tc_classes("a") and "rate 10Mbit" not in _tc_classes("a")
    status = run_cli(results, "cluster", "status")
    assert "a     rate=5mbit" in status.stdout and "b     rate=10mbit" in status.stdout
    assert run_cli(results, "cluster", "shape", "a", "speed=1").returncode == 2
    assert run_cli(results, "cluster", "shape", "zz", "rate=1mbit").returncode == 2


def test_a_client_interrupted_stops_its_program(held) -> None:
    results, _ = held
    env = {**os.environ, "TESTBED_RESULTS": str(results)}
    client = subprocess.Popen([sys.executable, "-m", "testbed", "cluster", "exec", "a", "--", "sleep", "300"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        procs = json.loads(_status_json(results))
        if any(p["argv"] == ["sleep", "300"] and p["running"] for p in procs):
            break
        time.sleep(0.2)  # polling the holder's process table until the program started
    client.send_signal(signal.SIGINT)
    client.wait(timeout=30)
    deadline = time.monotonic() + 30
    while any(p["running"] for p in json.loads(_status_json(results))) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(p["running"] for p in json.loads(_status_json(results)))


def _status_json(results: Path) -> str:
    from testbed.controller.cluster_hold import STATE_FILE, request

    state = json.loads((results / "clusters" / NAME / STATE_FILE).read_text())
    return json.dumps(request(state, {"op": "status"})["processes"])


def test_down_after_the_holder_was_killed_removes_everything(held) -> None:
    results, _ = held
    state = json.loads((results / "clusters" / NAME / "cluster.json").read_text())
    os.kill(state["pid"], signal.SIGKILL)
    assert cleanup.find(RUN_ID).netns
    res = run_cli(results, "cluster", "down", "--name", NAME)
    assert res.returncode == 0 and "also removed netns" in res.stdout, res.stdout + res.stderr
    assert not cleanup.find(RUN_ID)
    assert "no cluster is up" in run_cli(results, "cluster", "status").stdout
