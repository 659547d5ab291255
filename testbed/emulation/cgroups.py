"""Per-device cgroups: CPU quota and memory limit, on cgroup v2 or v1 (detected at run time)."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from testbed.emulation.naming import CGROUP_PREFIX, check_device_name, check_run_id

CGROUP_ROOT = Path("/sys/fs/cgroup")
CPU_PERIOD_US = 100_000
V1_CONTROLLERS = ("cpu", "memory")
V1_EXTRA = ("cpuacct",)  # joined when mounted separately, for CPU-time accounting


class CgroupError(RuntimeError):
    """Cgroups cannot be used here, or a limit could not be written."""


def detect_version(root: Path = CGROUP_ROOT) -> int | None:
    """2 on a unified hierarchy with cpu+memory, 1 on v1 (also hybrid), None if unusable."""
    controllers = root / "cgroup.controllers"
    if controllers.exists():
        available = controllers.read_text().split()
        return 2 if {"cpu", "memory"} <= set(available) else None
    if (root / "cpu" / "cpu.cfs_quota_us").exists() and (
        root / "memory" / "memory.limit_in_bytes"
    ).exists():
        return 1
    return None


def run_dirs(run_id: str | None = None, root: Path = CGROUP_ROOT) -> list[Path]:
    """The labelled run directories (all runs when run_id is None) in every hierarchy."""
    wanted = f"{CGROUP_PREFIX}{check_run_id(run_id)}" if run_id else None
    v1 = detect_version(root) == 1
    parents = [root / c for c in V1_CONTROLLERS + V1_EXTRA] if v1 else [root]
    found: dict[Path, Path] = {}
    for parent in (p for p in parents if p.is_dir()):
        for child in parent.iterdir():
            ours = child.name == wanted if wanted else child.name.startswith(CGROUP_PREFIX)
            if ours and child.is_dir():
                found.setdefault(child.resolve(), child)
    return sorted(found.values())


@dataclass(frozen=True)
class CgroupEvents:
    """What the memory controller recorded for a device.

    `oom_kills` is the reliable signal. `limit_hits` is the kernel's counter of
    allocations that hit the limit (v2 memory.events "max", v1 failcnt); recent
    kernels no longer count it in v1, so it may stay 0 there. `peak_bytes` is the
    highest usage seen (0 where the kernel does not report it).
    """

    oom_kills: int
    limit_hits: int
    peak_bytes: int


@dataclass
class DeviceCgroup:
    """One device's cgroup: a directory per v1 controller, or one unified v2 directory."""

    version: int
    paths: dict[str, Path]  # controller name ("cpu", "memory", "cpuacct") -> directory

    @property
    def cpu_dir(self) -> Path:
        return self.paths["cpu"]

    @property
    def memory_dir(self) -> Path:
        return self.paths["memory"]

    @property
    def dirs(self) -> list[Path]:
        unique = {p.resolve(): p for p in self.paths.values()}
        return sorted(unique.values())

    @property
    def procs_files(self) -> list[Path]:
        """Files a process writes its pid to in order to join (one per hierarchy in v1)."""
        return [d / "cgroup.procs" for d in self.dirs]

    def set_cpus(self, cpus: float | None) -> None:
        quota = None if cpus is None else max(1000, int(cpus * CPU_PERIOD_US))
        if self.version == 2:
            _write(self.cpu_dir / "cpu.max", f"{quota or 'max'} {CPU_PERIOD_US}")
        else:
            _write(self.cpu_dir / "cpu.cfs_period_us", str(CPU_PERIOD_US))
            _write(self.cpu_dir / "cpu.cfs_quota_us", str(quota or -1))

    def set_weight(self, weight: int) -> None:
        """Relative CPU weight under contention (v2 units 1..10000, default 100)."""
        if not 1 <= weight <= 10_000:
            raise ValueError(f"CPU weight {weight} out of range; expected 1..10000 (default 100)")
        if self.version == 2:
            _write(self.cpu_dir / "cpu.weight", str(weight))
        else:
            _write(self.cpu_dir / "cpu.shares", str(max(2, weight * 1024 // 100)))

    def set_memory(self, limit_bytes: int | None) -> None:
        """Cap memory, and memory+swap where the kernel accounts swap, so the cap is hard."""
        if self.version == 2:
            _write(self.memory_dir / "memory.max", str(limit_bytes or "max"))
            if (self.memory_dir / "memory.swap.max").exists():
                _write(self.memory_dir / "memory.swap.max", "0" if limit_bytes else "max")
            return
        value = str(limit_bytes or -1)
        memsw = self.memory_dir / "memory.memsw.limit_in_bytes"
        # memsw must stay >= the memory limit: raise memsw first when lifting the cap
        if memsw.exists() and limit_bytes is None:
            _write(memsw, value)
        _write(self.memory_dir / "memory.limit_in_bytes", value)
        if memsw.exists() and limit_bytes is not None:
            _write(memsw, value)

    def pids(self) -> list[int]:
        found: set[int] = set()
        for procs in self.procs_files:
            if procs.exists():
                found.update(int(p) for p in procs.read_text().split())
        return sorted(found)

    def events(self) -> CgroupEvents:
        if self.version == 2:
            fields = _keyed(self.memory_dir / "memory.events")
            peak = _read_int(self.memory_dir / "memory.peak")
            return CgroupEvents(fields.get("oom_kill", 0), fields.get("max", 0), peak)
        fields = _keyed(self.memory_dir / "memory.oom_control")
        hits = max(_read_int(self.memory_dir / f"memory.{c}failcnt") for c in ("", "memsw."))
        peak = _read_int(self.memory_dir / "memory.max_usage_in_bytes")
        return CgroupEvents(fields.get("oom_kill", 0), hits, peak)

    def cpu_usage_s(self) -> float:
        """CPU time used by the group's processes so far (v2 cpu.stat, v1 cpuacct)."""
        if self.version == 2:
            return _keyed(self.cpu_dir / "cpu.stat").get("usage_usec", 0) / 1e6
        usage = self.paths.get("cpuacct", self.cpu_dir) / "cpuacct.usage"
        return int(usage.read_text()) / 1e9 if usage.exists() else 0.0

    def remove(self, timeout_s: float = 5.0) -> list[int]:
        """Kill every process left in the group, then remove its directories."""
        killed = kill_and_remove(self.dirs, timeout_s)
        for parent in {d.parent for d in self.dirs}:
            _rmdir_if_empty(parent)
        return killed


def create(run_id: str, device: str, root: Path = CGROUP_ROOT) -> DeviceCgroup:
    """Make `testbed-<run>/<device>` in the cpu and memory hierarchies (v1) or unified (v2)."""
    version = detect_version(root)
    run, dev = f"{CGROUP_PREFIX}{check_run_id(run_id)}", check_device_name(device)
    if version == 2:
        _enable_v2_controllers(root)
        (root / run).mkdir(exist_ok=True)
        _enable_v2_controllers(root / run)
        path = root / run / dev
        path.mkdir(exist_ok=True)
        return DeviceCgroup(2, {"cpu": path, "memory": path})
    if version == 1:
        paths = {c: root / c / run / dev for c in V1_CONTROLLERS + V1_EXTRA if (root / c).is_dir()}
        for path in paths.values():
            path.mkdir(parents=True, exist_ok=True)
        return DeviceCgroup(1, paths)
    raise CgroupError(
        f"no usable cgroup hierarchy at {root}: expected cgroup v2 with cpu and memory "
        "controllers, or v1 with cpu/ and memory/ mounted"
    )


def kill_and_remove(dirs: list[Path], timeout_s: float = 5.0) -> list[int]:
    """SIGKILL all processes under `dirs` (deepest first), wait, and rmdir them."""
    killed: list[int] = []
    for top in dirs:
        if not top.is_dir():
            continue
        for path in sorted((p for p in top.rglob("*") if p.is_dir()), reverse=True) + [top]:
            killed += _kill_procs(path, timeout_s)
            path.rmdir()
    return killed


def _kill_procs(path: Path, timeout_s: float) -> list[int]:
    procs = path / "cgroup.procs"
    pids = [int(p) for p in procs.read_text().split()]
    if (path / "cgroup.kill").exists() and pids:
        _write(path / "cgroup.kill", "1")
    for pid in pids:
        _signal(pid)
    deadline = time.monotonic() + timeout_s
    while procs.read_text().split():
        if time.monotonic() > deadline:
            raise CgroupError(f"processes {procs.read_text().split()} in {path} survived SIGKILL")
        for pid in map(int, procs.read_text().split()):
            _signal(pid)
        time.sleep(0.02)
    return pids


def _signal(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _enable_v2_controllers(path: Path) -> None:
    control = path / "cgroup.subtree_control"
    if {"cpu", "memory"} <= set(control.read_text().split()):
        return
    try:
        _write(control, "+cpu +memory")
    except CgroupError as error:
        raise CgroupError(
            f"{error}; cgroup v2 refuses to delegate cpu and memory below {path} "
            "(it must hold no processes itself, and the controllers must be enabled above it)"
        ) from None


def _rmdir_if_empty(path: Path) -> None:
    ours = path.name.startswith(CGROUP_PREFIX) and path.is_dir()
    if ours and not any(p.is_dir() for p in path.iterdir()):
        try:
            path.rmdir()
        except OSError:
            pass  # another device's group is still being removed


def _keyed(path: Path) -> dict[str, int]:
    """Parse 'key value' lines (memory.events, memory.oom_control, cpu.stat)."""
    pairs = (line.split() for line in path.read_text().splitlines())
    return {p[0]: int(p[1]) for p in pairs if len(p) == 2 and p[1].lstrip("-").isdigit()}


def _read_int(path: Path) -> int:
    return int(path.read_text()) if path.exists() else 0


def _write(path: Path, value: str) -> None:
    try:
        path.write_text(value)
    except OSError as error:
        raise CgroupError(f"cannot write {value!r} to {path}: {error.strerror}") from None
