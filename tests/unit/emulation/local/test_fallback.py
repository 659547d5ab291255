"""Fast tier: the no-root fallback of the local backend (loopback, CPU affinity, thread limits)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from testbed.emulation.config import ClusterSpec, ScheduleEntry
from testbed.emulation.fidelity import DEGRADED_NO_ROOT
from testbed.emulation.handle import ClusterHandle
from testbed.emulation.local.backend import LocalBackend
from testbed.emulation.local.fallback import UPLINK_RATE_ENV, degraded_notes
from testbed.emulation.probe import probe_link

REPORT = (
    "import json, os; print(json.dumps({'cpus': sorted(os.sched_getaffinity(0)), "
    "'omp': os.environ.get('OMP_NUM_THREADS'), 'intra': os.environ.get('TF_NUM_INTRAOP_THREADS'), "
    "'device': os.environ['TESTBED_DEVICE'], 'rate': os.environ.get('TESTBED_LINK_RATE_BPS'), "
    "'uplink': os.environ.get('TESTBED_UPLINK_RATE_BPS'), 'extra': os.environ.get('EXTRA')}))"
)


def _spec() -> ClusterSpec:
    return ClusterSpec.model_validate(
        {
            "devices": [{"name": "edge1", "cpus": 1}, {"name": "big", "profile": "cloud"}],
            "links": [{"device": "edge1", "rate": "10mbit", "delay": "20ms"}],
        }
    )


def test_degraded_cluster_runs_pinned_processes_on_loopback() -> None:
    with LocalBackend("test-degraded", privileged=False).up(_spec()) as handle:
        assert handle.fidelity.level == DEGRADED_NO_ROOT
        assert any("not shaped" in note for note in handle.fidelity.notes)
        assert any("paces each device's uploads" in n for n in handle.fidelity.notes)
        assert any("delay, jitter and loss are not emulated" in n for n in handle.fidelity.notes)
        assert handle.address("edge1") == handle.address("big") == "127.0.0.1"
        assert handle.configured_rate_bps("edge1") == 10**7
        assert handle.resource_events("edge1") is None  # nothing enforces memory here
        proc = handle.spawn(
            "edge1",
            [sys.executable, "-c", REPORT],
            env={"EXTRA": "1"},
            stdout=subprocess.PIPE,
            text=True,
        )
        seen = json.loads(proc.communicate(timeout=30)[0])
        assert len(seen["cpus"]) == 1 and seen["cpus"][0] in os.sched_getaffinity(0)
        assert (seen["omp"], seen["intra"], seen["device"]) == ("1", "1", "edge1")
        assert (seen["rate"], seen["uplink"], seen["extra"]) == ("10000000", "10000000", "1")
        assert UPLINK_RATE_ENV not in handle.device_env(handle.device("big"))  # no link: unpaced
        # only the fallback asks for pacing: the base (root backends, tc) never sets it
        assert UPLINK_RATE_ENV not in ClusterHandle.device_env(handle, handle.device("edge1"))
        with pytest.raises(RuntimeError, match="not shaped by the kernel"):
            probe_link(handle, "edge1", "big")


def test_degraded_links_change_at_run_time_and_down_stops_processes() -> None:
    handle = LocalBackend("test-degraded-2", privileged=False).start(_spec())
    assert handle.apply(ScheduleEntry(at_s=3, device="edge1", rate="1mbit")).rate_bps == 10**6
    assert handle.link("edge1").delay == "20ms"  # type: ignore[union-attr]  # unset: kept
    with pytest.raises(KeyError, match="unknown device 'nope'"):
        handle.update_link("nope", rate="1mbit")
    sleeper = handle.spawn("big", ["sleep", "60"])
    handle.down()
    assert sleeper.poll() is not None
    handle.down()
    with pytest.raises(RuntimeError, match="is down"):
        handle.spawn("big", ["true"])


def test_degraded_notes_say_what_the_pacing_leaves_out() -> None:
    spec = ClusterSpec.model_validate(
        {
            "devices": [{"name": "edge1"}],
            "links": [{"device": "edge1", "rate": "10mbit"}],
            "schedule": [{"at_s": 3, "device": "edge1", "rate": "1mbit"}],
        }
    )
    notes = degraded_notes(spec, {})
    assert any("downloads and pair-link rates are not limited" in n for n in notes)
    assert "rate changes at run time reach only processes spawned after them" in notes
    assert not any("rate changes" in n for n in degraded_notes(_spec(), {}))


def _state(pid: int) -> str:
    stat = open(f"/proc/{pid}/stat").read()
    return stat[stat.rindex(")") + 2]


def test_device_faults_freeze_resume_and_kill_only_that_device() -> None:
    handle = LocalBackend("test-degraded-faults", privileged=False).start(_spec())
    try:
        target = handle.spawn("edge1", ["sleep", "60"])
        bystander = handle.spawn("big", ["sleep", "60"])
        done = handle.apply(ScheduleEntry(at_s=1, device="edge1", fault="pause"))
        assert done == {"device": "edge1", "fault": "pause", "pids": [target.pid]}
        deadline = time.monotonic() + 5
        while _state(target.pid) != "T" and time.monotonic() < deadline:  # stopped
            time.sleep(0.01)
        assert _state(target.pid) == "T" and _state(bystander.pid) != "T"
        handle.apply(ScheduleEntry(at_s=2, device="edge1", fault="resume"))
        while _state(target.pid) == "T" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _state(target.pid) != "T"
        handle.apply(ScheduleEntry(at_s=3, device="edge1", fault="kill"))
        assert target.wait(timeout=5) == -9 and bystander.poll() is None
        assert handle.device_pids("edge1") == []
    finally:
        handle.down()


def test_link_faults_need_the_kernel_links() -> None:
    spec = _spec().model_copy(update={"schedule": [ScheduleEntry(at_s=1, device="edge1", fault="link-down")]})
    with pytest.raises(ValueError, match="link-down/link-up of \\[\"device 'edge1'\"\\] need"):
        LocalBackend("test-degraded-cut", privileged=False).start(spec)
