"""Without root: devices are plain processes on loopback, pinned to CPUs, with thread limits.

Nothing is isolated or shaped by the kernel here. CPU caps become CPU
affinity (ceil(cpus) cores per device, shared round-robin when there are
fewer cores than asked for) plus thread-count variables; memory caps are not
enforced. Link rates are not shaped by the kernel: each device's access-link
rate (`configured_rate_bps(dev)`) is handed to its processes as
`UPLINK_RATE_ENV`, and the runtime's senders pace that device's *uploads* with
a user-space token bucket (`testbed.runtime.pacing`). Downloads, pair-link
rates, delay, jitter and loss are not emulated, and a rate changed at run time
reaches only processes spawned after the change. `fidelity.level` says so.
"""

from __future__ import annotations

import math
import os

from testbed.emulation.config import ClusterSpec, LinkSettings
from testbed.emulation.fidelity import DEGRADED_NO_ROOT, Fidelity
from testbed.emulation.handle import ClusterHandle
from testbed.emulation.profiles import ResolvedDevice, gpu_count
from testbed.emulation.resolve import resolve_devices
from testbed.emulation.usage import CounterReader, process_reader

LOOPBACK = "127.0.0.1"
# read by testbed.runtime.pacing (same name; tests/test_pacing.py checks they agree). Only
# this backend sets it: the root backends shape with tc, which pacing must not repeat.
UPLINK_RATE_ENV = "TESTBED_UPLINK_RATE_BPS"


def assign_cpus(devices: list[ResolvedDevice], host_cpus: list[int]) -> dict[str, list[int]]:
    """ceil(cpus) host CPUs per capped device, round-robin; uncapped devices get none (all)."""
    if not host_cpus:
        raise ValueError("no host CPUs to assign; expected at least one")
    assigned, cursor = {}, 0
    for device in devices:
        if device.cpus is None:
            continue
        count = min(math.ceil(device.cpus), len(host_cpus))
        assigned[device.name] = sorted(
            host_cpus[(cursor + i) % len(host_cpus)] for i in range(count)
        )
        cursor += count
    return assigned


def degraded_notes(cluster: ClusterSpec, devices: dict[str, ResolvedDevice]) -> list[str]:
    notes = [
        "no root: devices run as plain processes on loopback (no network namespaces)",
        "CPU caps approximated by CPU affinity and thread-count variables, not a quota",
        "power meter: CPU from each device's processes (/proc); link bytes are not metered",
    ]
    if any(d.memory_bytes for d in devices.values()):
        notes.append("memory caps are not enforced")
    if cluster.links:
        notes.append(
            "link rates are not shaped by the kernel: the runtime paces each device's uploads "
            "to its configured rate with a token bucket; downloads and pair-link rates are "
            "not limited"
        )
    if any(entry.rate for entry in cluster.schedule):
        notes.append("rate changes at run time reach only processes spawned after them")
    if any(link.netem_settings() for link in cluster.links + cluster.schedule):
        notes.append("delay, jitter and loss are not emulated")
    return notes


class DegradedCluster(ClusterHandle):
    """The no-root handle: same interface, lower fidelity (see the module docstring)."""

    @classmethod
    def create(cls, run_id: str, cluster: ClusterSpec) -> DegradedCluster:
        cut = [e.label for e in cluster.schedule if e.fault in ("link-down", "link-up")]
        if cut:
            raise ValueError(f"cluster.schedule: link-down/link-up of {cut} need the kernel's "
                             "links (run as root); without root only kill, pause and resume work")
        devices = resolve_devices(cluster.devices, gpu_count())
        return cls(
            run_id,
            cluster,
            devices,
            Fidelity(DEGRADED_NO_ROOT, notes=degraded_notes(cluster, devices)),
        )

    def __init__(
        self,
        run_id: str,
        cluster: ClusterSpec,
        devices: dict[str, ResolvedDevice],
        fidelity: Fidelity,
    ) -> None:
        super().__init__(run_id, cluster, devices, fidelity)
        host_cpus = sorted(os.sched_getaffinity(0))
        self.cpu_sets = assign_cpus(list(devices.values()), host_cpus)

    def address(self, device: str) -> str:
        self.device(device)
        return LOOPBACK

    def device_env(self, device: ResolvedDevice) -> dict[str, str]:
        """The base variables, plus the uplink rate the runtime must pace to (if any)."""
        env = super().device_env(device)
        rate = self.configured_rate_bps(device.name)
        if rate is not None:
            env[UPLINK_RATE_ENV] = str(rate)
        return env

    def _launch_args(self, device: str) -> list[str]:
        cpus = self.cpu_sets.get(device)
        return ["--cpus", ",".join(map(str, cpus))] if cpus else []

    def counter_reader(self, device: str) -> CounterReader:
        """CPU seconds of the processes spawned on the device (no link counters on loopback)."""
        name = self.device(device).name
        return process_reader(lambda: [p.pid for d, p in self._device_procs if d == name])

    def _apply_link(self, key: tuple[str, ...], settings: LinkSettings) -> None:
        """Nothing to write: the new settings are only recorded for the runtime to read."""

    def _teardown(self) -> None:
        """Nothing but the processes (stopped by `down`) was made."""
