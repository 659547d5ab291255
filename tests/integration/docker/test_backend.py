"""Docker tier: devices as capped containers, shaped links measured by the probe, nothing left behind.

Needs a Docker engine and the images from docker/build-images.sh; skipped with the reason when
either is missing, failed instead when TESTBED_REQUIRE_DOCKER=1 (CI, after .ci/docker.sh).
The working tree's package is bind-mounted over the image's copy (`mount_source`), so these
tests exercise this checkout's code inside the image's environment.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testbed.emulation.cleanup import clean, find
from testbed.emulation.config import ClusterSpec, ScheduleEntry
from testbed.emulation.docker import cleanup as docker_cleanup
from testbed.emulation.docker.backend import (
    RELAY,
    DockerBackend,
    DockerCluster,
    DockerUnavailable,
    connect,
)
from testbed.emulation.docker.devices import RUN_LABEL, exec_user
from testbed.emulation.fidelity import FULL
from testbed.emulation.netem import NetemUnavailable
from testbed.emulation.probe import probe_link

pytestmark = pytest.mark.docker

TOLERANCE = 0.05
MIB = 1024**2
WORKER_AMD64 = "testbed-worker:amd64"

CAPS = """
import json, os
def read(p):
    try:
        return open(p).read().split()
    except OSError:
        return None
v2 = read("/sys/fs/cgroup/cpu.max")
if v2:
    quota, period = v2
    memory = read("/sys/fs/cgroup/memory.max")[0]
else:
    quota = read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")[0]
    period = read("/sys/fs/cgroup/cpu/cpu.cfs_period_us")[0]
    memory = read("/sys/fs/cgroup/memory/memory.limit_in_bytes")[0]
print(json.dumps({"quota": int(quota), "period": int(period), "memory": int(memory)}))
"""

BUSY = """
import json, time
wall0, cpu0 = time.monotonic(), time.process_time()
while time.monotonic() - wall0 < 2.0:
    pass
print(json.dumps({"share": (time.process_time() - cpu0) / (time.monotonic() - wall0)}))
"""

HOG = "x = bytearray(512 * 1024 * 1024); x[::4096] = b'1' * len(x[::4096]); print('survived')"


def _require(reason: str) -> None:
    if os.environ.get("TESTBED_REQUIRE_DOCKER") == "1":
        pytest.fail(f"{reason} (TESTBED_REQUIRE_DOCKER=1)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def engine() -> Any:
    try:
        client = connect(timeout_s=30)
    except DockerUnavailable as error:
        _require(str(error))
    import docker.errors

    try:
        client.images.get(WORKER_AMD64)
    except docker.errors.ImageNotFound:
        _require(f"image {WORKER_AMD64} missing: run docker/build-images.sh --arch amd64")
    return client


def _run_id(name: str) -> str:
    return f"test-docker-{name}-{os.getpid()}"


def _spec(devices: list[dict[str, Any]], links: list[dict[str, Any]] | None = None) -> ClusterSpec:
    return ClusterSpec.model_validate(
        {"backend": "docker", "devices": devices, "links": links or []}
    )


PAIR = _spec(
    [
        {"name": "a", "profile": "edge", "cpus": 0.5, "memory": "256m"},
        {"name": "b", "profile": "cloud"},
    ],
    [{"device": "a", "rate": "10mbit"}],
)


def run_json(handle: DockerCluster, device: str, script: str, timeout_s: float = 60) -> Any:
    proc = handle.spawn(device, [sys.executable, "-c", script], stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, text=True)  # fmt: skip
    out, err = proc.communicate(timeout=timeout_s)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture
def pair(engine: Any, tmp_path: Path) -> Iterator[DockerCluster]:
    run_id = _run_id("pair")
    backend = DockerBackend(run_id, mounts=[tmp_path], client=engine, mount_source=True)
    with backend.up(PAIR) as handle:
        yield handle
    assert docker_cleanup.find(run_id, engine) == ([], []), "labelled containers/networks left"


def test_caps_are_visible_inside_the_container(pair: DockerCluster) -> None:
    assert pair.fidelity.level == FULL
    caps = run_json(pair, "a", CAPS)
    assert caps["quota"] / caps["period"] == pytest.approx(0.5)
    assert caps["memory"] == 256 * MIB
    uncapped = run_json(pair, "b", CAPS)
    assert uncapped["quota"] in (-1, "max") or uncapped["quota"] < 0


def test_busy_loop_gets_at_most_half_a_core(pair: DockerCluster) -> None:
    share = run_json(pair, "a", BUSY)["share"]
    print(f"busy loop in a 0.5-CPU container: {share:.2f} of a core")
    assert 0.2 < share <= 0.6  # the quota caps it; a busy host may give less


def test_power_meter_reads_the_container_cgroup(pair: DockerCluster) -> None:
    """The meter integrates a busy loop in the 0.5-CPU container as the model at full quota."""
    from testbed.emulation.meter import MeterTarget, PowerMeter
    from testbed.emulation.power import PowerModel

    read = pair.counter_reader("a")
    assert read is not None, "the engine runs on this host: the container's cgroup is visible"
    meter = PowerMeter({"a": MeterTarget(read, PowerModel(2.0, 12.0), pair.quota_cpus("a"))},
                       lambda d, f: None)  # fmt: skip
    with meter:
        proc = pair.spawn("a", [sys.executable, "-c", "while True: pass"])
        time.sleep(1.0)
        meter.mark("start")
        time.sleep(2.0)
        meter.mark("end")
        proc.kill()
        proc.wait()
    a = meter.summary("start", "end")["devices"]["a"]
    assert a["utilisation"] == pytest.approx(1.0, rel=0.05)
    assert a["energy_j"] == pytest.approx(12.0 * a["seconds"], rel=0.05)


def test_memory_over_the_limit_is_killed_and_reported(pair: DockerCluster) -> None:
    proc = pair.spawn("a", [sys.executable, "-c", HOG], stdout=subprocess.PIPE, text=True)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == -9 and "survived" not in out  # SIGKILL by the OOM killer
    assert pair.resource_events("a").oom_kills >= 1


def test_shaped_link_measured_by_the_probe_in_both_directions(pair: DockerCluster) -> None:
    assert pair.class_rates("a") == {
        "eth0": {1: 10**7, 0x2: 10**7, 0x10: 10**7},
        "ifb0": {1: 10**7, 0x2: 10**7, 0x10: 10**7},
    }
    upload = probe_link(pair, "a", "b", seconds=1.0)
    download = probe_link(pair, "b", "a", seconds=1.0)  # through a's ifb
    print(upload.describe(), download.describe(), sep="\n")
    assert upload.within(TOLERANCE), upload.describe()
    assert download.within(TOLERANCE), download.describe()
    pair.update_link("a", rate="100mbit")
    assert pair.class_rates("a")["ifb0"] == {1: 10**8, 0x2: 10**8, 0x10: 10**8}
    fast = probe_link(pair, "b", "a", seconds=1.0)
    print(fast.describe())
    assert fast.within(TOLERANCE), fast.describe()
    assert len(pair.fidelity.probes) == 3


def test_terminate_and_kill_of_the_relay_stop_the_program(pair: DockerCluster) -> None:
    sleeper = "import sys, time; print('up', flush=True); time.sleep(600)"
    for stop in ("terminate", "kill"):
        marker = f"marker-{stop}-{os.getpid()}"
        proc = pair.spawn("b", [sys.executable, "-c", sleeper, marker], stdout=subprocess.PIPE,
                          text=True)  # fmt: skip
        assert proc.stdout is not None and proc.stdout.readline() == "up\n"
        getattr(proc, stop)()
        proc.wait(timeout=30)
        deadline = time.monotonic() + 15
        while _running(pair, "b", marker) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _running(pair, "b", marker), f"program still runs after relay {stop}"


def _running(handle: DockerCluster, device: str, marker: str) -> bool:
    pattern = f"[{marker[0]}]{marker[1:]}"  # a pattern that does not match its own command line
    script = f"grep -l '{pattern}' /proc/[0-9]*/cmdline 2>/dev/null"
    result = handle.container(device).exec_run(["sh", "-c", script])
    return bool(result.output.strip())


def test_netem_settings_are_refused_where_the_kernel_lacks_netem(engine: Any) -> None:
    spec = _spec([{"name": "a", "profile": "cloud"}, {"name": "b", "profile": "cloud"}],
                 [{"device": "a", "rate": "10mbit", "delay": "20ms"}])  # fmt: skip
    run_id = _run_id("netem")
    try:
        with DockerBackend(run_id, client=engine, mount_source=True).up(spec) as handle:
            assert handle.fidelity.netem, "the cluster came up, so the kernel must have netem"
    except NetemUnavailable as error:
        assert "delay" in str(error) and "netem" in str(error)
    assert docker_cleanup.find(run_id, engine) == ([], [])


def test_nothing_is_left_after_an_exception_inside_up(engine: Any) -> None:
    run_id = _run_id("boom")
    backend = DockerBackend(run_id, client=engine, mount_source=True)
    with pytest.raises(RuntimeError, match="boom"), backend.up(PAIR) as handle:
        assert len(handle.containers) == 2 and find(run_id).containers
        raise RuntimeError("boom")
    assert docker_cleanup.find(run_id, engine) == ([], [])


def test_nothing_is_left_when_start_fails_midway(engine: Any) -> None:
    run_id = _run_id("midway")
    base = {"amd64": "testbed-base:bookworm-amd64"}  # no testbed package: shaping cannot run
    with pytest.raises(RuntimeError, match="exited"):
        DockerBackend(run_id, client=engine, images=base).start(PAIR)
    assert docker_cleanup.find(run_id, engine) == ([], [])


def test_clean_removes_only_labelled_resources(engine: Any) -> None:
    run_id = _run_id("clean")
    labelled = engine.containers.run(WORKER_AMD64, ["sleep", "infinity"], detach=True,
                                     labels={RUN_LABEL: run_id})  # fmt: skip
    stranger = engine.containers.run(WORKER_AMD64, ["sleep", "infinity"], detach=True)
    network = engine.networks.create(f"tb-stray-{os.getpid()}", labels={RUN_LABEL: run_id})
    try:
        gone = clean(run_id)
        assert gone.containers == [labelled.name] and gone.networks == [network.name]
        stranger.reload()
        assert stranger.status == "running"
        assert not find(run_id)
    finally:
        stranger.remove(force=True)


# -- faults and a killed controller ------------------------------------------------------

ORPHAN = "import sys, time; print('up', flush=True); time.sleep(600)"
SERVER = ("import socket; s = socket.socket(); s.bind(('0.0.0.0', 7777)); s.listen(); "
          "print('up', flush=True)\nwhile True: s.accept()[0].close()")
CONNECT = ("import socket, sys\ntry:\n    socket.create_connection((sys.argv[1], 7777), timeout=2)"
           ".close(); print('ok')\nexcept OSError: print('cut')")  # fmt: skip


@pytest.fixture
def twins(engine: Any, tmp_path: Path) -> Iterator[DockerCluster]:
    spec = _spec([{"name": "a", "profile": "cloud"}, {"name": "b", "profile": "cloud"}])
    run_id = _run_id("faults")
    with DockerBackend(run_id, mounts=[tmp_path], client=engine, mount_source=True).up(spec) as h:
        yield h
    assert docker_cleanup.find(run_id, engine) == ([], []), "labelled containers/networks left"


def _state(pid: int) -> str:
    stat = open(f"/proc/{pid}/stat").read()
    return stat[stat.rindex(")") + 2]


def _started(handle: DockerCluster, device: str, script: str, *args: str) -> subprocess.Popen[str]:
    proc = handle.spawn(device, [sys.executable, "-c", script, *args], stdout=subprocess.PIPE,
                        text=True)  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline() == "up\n"
    return proc


def _reach(handle: DockerCluster) -> str:
    proc = handle.spawn("b", [sys.executable, "-c", CONNECT, handle.address("a")],
                        stdout=subprocess.PIPE, text=True)  # fmt: skip
    return proc.communicate(timeout=60)[0].strip()


def test_device_faults_pause_cut_and_kill_the_container_processes(twins: DockerCluster) -> None:
    server = _started(twins, "a", SERVER)
    pids = twins.device_pids("a")
    assert pids and all(_state(p) in "SR" for p in pids)
    twins.apply(ScheduleEntry(at_s=0, device="a", fault="pause"))
    assert all(_state(p) == "T" for p in twins.device_pids("a"))
    twins.apply(ScheduleEntry(at_s=1, device="a", fault="resume"))
    assert all(_state(p) != "T" for p in twins.device_pids("a"))
    assert _reach(twins) == "ok"
    twins.apply(ScheduleEntry(at_s=2, device="a", fault="link-down"))
    assert _reach(twins) == "cut"
    twins.apply(ScheduleEntry(at_s=3, device="a", fault="link-up"))
    assert _reach(twins) == "ok"
    twins.apply(ScheduleEntry(at_s=4, device="a", fault="kill"))
    assert server.wait(timeout=30) == -signal.SIGKILL  # the relay reports the program's death
    assert twins.device_pids("a") == []
    assert twins.container("a").status == "running" or twins.container("a").reload() is None


def test_a_relay_whose_parent_is_killed_stops_its_program(twins: DockerCluster) -> None:
    marker = f"orphan-{os.getpid()}"
    relay = [*RELAY, "--container", twins.container("b").id, "--user", exec_user(), "--",
             "python3", "-c", ORPHAN, marker]  # fmt: skip
    parent = subprocess.Popen(["sh", "-c", shlex.join(relay) + " & wait"],
                              start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 60
    while not _running(twins, "b", marker):
        assert time.monotonic() < deadline, "the program never started"
        time.sleep(0.2)
    os.kill(parent.pid, signal.SIGKILL)  # like a SIGKILLed controller
    parent.wait()
    killed = time.monotonic()
    while _running(twins, "b", marker) and time.monotonic() - killed < 20:
        time.sleep(0.2)
    assert not _running(twins, "b", marker), "the program outlived its relay's parent"
    print(f"program gone {time.monotonic() - killed:.1f} s after its relay's parent was killed")
