"""A device's usage counters read from the kernel: CPU seconds of its cgroup (or its processes)
and the bytes of its link, for the power meter. Only reads files under /proc and /sys/fs/cgroup.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from testbed.emulation.cgroups import CGROUP_ROOT, DeviceCgroup

PROC = Path("/proc")
DEVICE_IF = "eth0"

Counters = tuple[float, int, int]
"""(CPU seconds, bytes sent, bytes received), each cumulative."""
CounterReader = Callable[[], Counters | None]


def net_bytes(pid: int, ifname: str = DEVICE_IF, proc: Path = PROC) -> tuple[int, int] | None:
    """(sent, received) bytes of `ifname` in the network namespace of process `pid`."""
    try:
        text = (proc / str(pid) / "net" / "dev").read_text()
    except OSError:  # gone, or not ours to read
        return None
    for line in text.splitlines()[2:]:
        name, _, rest = line.partition(":")
        if name.strip() == ifname:
            fields = rest.split()
            return int(fields[8]), int(fields[0])
    return None


def process_cpu_s(pid: int, proc: Path = PROC) -> float | None:
    """User + system CPU seconds of a process and its waited-for children (None when gone)."""
    try:
        stat = (proc / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # fields[0] is the state (field 3 of stat)
    ticks = sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK")


@dataclass
class LinkBytes:
    """A device's link counters read through any live process inside its network namespace;
    the last good reading stands while none is alive (nothing can send then)."""

    ifname: str = DEVICE_IF
    proc: Path = PROC
    last: tuple[int, int] = (0, 0)

    def read(self, pids: Iterable[int]) -> tuple[int, int]:
        for pid in pids:
            found = net_bytes(pid, self.ifname, self.proc)
            if found is not None:
                self.last = found
                break
        return self.last


def cgroup_reader(group: DeviceCgroup) -> CounterReader:
    """CPU of the device's cgroup (v1 cpuacct or v2 cpu.stat) and its eth0 bytes."""
    link = LinkBytes()

    def read() -> Counters | None:
        try:
            cpu = group.cpu_usage_s()
            pids = group.pids()
        except OSError:  # the group is being removed
            return None
        return (cpu, *link.read(pids))

    return read


@dataclass
class ProcessCpu:
    """CPU seconds of a set of processes, keeping what exited processes had used."""

    proc: Path = PROC
    seen: dict[int, float] = field(default_factory=dict)

    def read(self, pids: Iterable[int]) -> float:
        for pid in pids:
            cpu = process_cpu_s(pid, self.proc)
            if cpu is not None:
                self.seen[pid] = max(cpu, self.seen.get(pid, 0.0))
        return sum(self.seen.values())


def process_reader(pids: Callable[[], list[int]]) -> CounterReader:
    """Without cgroups or namespaces (no root): CPU of the device's processes; no link bytes
    (on loopback nothing tells one device's traffic from another's)."""
    cpu = ProcessCpu()

    def read() -> Counters:
        return cpu.read(pids()), 0, 0

    return read


def cgroup_of_pid(pid: int, proc: Path = PROC, root: Path = CGROUP_ROOT) -> DeviceCgroup | None:
    """The cgroup a process (e.g. a container's init) accounts its CPU in, as a DeviceCgroup."""
    try:
        lines = (proc / str(pid) / "cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        rel = path.lstrip("/")
        if controllers == "" and (root / rel / "cpu.stat").exists():
            return DeviceCgroup(2, {"cpu": root / rel, "memory": root / rel})
        if "cpuacct" in controllers.split(","):
            where = root / controllers / rel
            if (where / "cpuacct.usage").exists():
                return DeviceCgroup(1, {"cpu": where, "cpuacct": where, "memory": where})
    return None


def pid_reader(pid: int, proc: Path = PROC, root: Path = CGROUP_ROOT) -> CounterReader | None:
    """Counters of the cgroup and network namespace a process lives in (a container's init,
    seen from the host running the engine); None where its cgroup is not visible here."""
    group = cgroup_of_pid(pid, proc, root) if pid > 0 else None
    if group is None:
        return None
    link = LinkBytes(proc=proc)

    def read() -> Counters | None:
        try:
            cpu = group.cpu_usage_s()
        except OSError:
            return None
        return (cpu, *link.read([pid]))

    return read
