"""What a running cluster offers its caller, whatever realises it: addresses, spawn, links, down."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Self

from testbed.emulation.agents import agent_argv
from testbed.emulation.cgroups import CgroupEvents
from testbed.emulation.config import (
    ClusterSpec,
    LinkSettings,
    ScheduleEntry,
    Selector,
    check_jitter,
    selector_of,
)
from testbed.emulation.fidelity import Fidelity
from testbed.emulation.meter import MeterTarget
from testbed.emulation.profiles import ResolvedDevice, ResourceUnavailable, host_arch
from testbed.emulation.shaping import path_rate_bps
from testbed.emulation.usage import CounterReader

NSEXEC = agent_argv("nsexec")
THREAD_VARS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS",
)


def assign_gpus(devices: dict[str, ResolvedDevice]) -> dict[str, list[int]]:
    """Host GPU indices per device, handed out in order (resolution already checked the count)."""
    indices, next_gpu = {}, 0
    for name, device in devices.items():
        indices[name] = list(range(next_gpu, next_gpu + device.gpus))
        next_gpu += device.gpus
    return indices


def device_notes(devices: dict[str, ResolvedDevice]) -> list[str]:
    """Resolution notes, and architectures the local backend runs natively instead."""
    notes: list[str] = []
    for device in devices.values():
        notes.extend(device.notes)
        if device.arch != host_arch():
            notes.append(
                f"device {device.name!r}: arch {device.arch} is not emulated by the local "
                f"backend; it runs natively on {host_arch()}"
            )
    return notes


class ClusterHandle:
    """A running cluster, whatever realises it (namespaces, plain processes, containers);
    subclasses realise addresses, launch and links."""

    def __init__(
        self,
        run_id: str,
        cluster: ClusterSpec,
        devices: dict[str, ResolvedDevice],
        fidelity: Fidelity,
    ) -> None:
        self.run_id = run_id
        self.cluster = cluster
        self.devices = devices
        self.fidelity = fidelity
        self.links: dict[tuple[str, ...], LinkSettings] = {
            link.key: link.link_settings() for link in cluster.links
        }
        self.gpu_indices = assign_gpus(devices)
        self.fidelity.notes.extend(device_notes(devices))
        self.host_address: str | None = None  # the host's address inside the cluster, if any
        self.unshaped: tuple[str, ...] = ()  # destinations the devices reach without shaping
        self._procs: list[subprocess.Popen[Any]] = []
        self._device_procs: list[tuple[str, subprocess.Popen[Any]]] = []  # (device name, process)
        self._down = False
        self._torn_down = False

    # -- to be provided by subclasses -------------------------------------------------------
    def address(self, device: str) -> str:
        raise NotImplementedError

    def _launch_args(self, device: str) -> list[str]:
        raise NotImplementedError

    def _apply_link(self, key: tuple[str, ...], settings: LinkSettings) -> None:
        raise NotImplementedError

    def _teardown(self) -> None:
        raise NotImplementedError

    def _reshape_all(self) -> None:
        """Re-plan and re-apply every device's shaping (nothing to do where nothing shapes)."""

    # -- processes -------------------------------------------------------------------------
    def spawn(
        self, device: str, argv: list[str], env: dict[str, str] | None = None, **popen: Any
    ) -> subprocess.Popen[Any]:
        """Start argv as the device: in its namespace and cgroup (or pinned, when degraded).

        `env` is merged over this process's environment, after the device's own
        variables (TESTBED_*, thread counts, CUDA_VISIBLE_DEVICES).
        """
        self._require_up()
        resolved = self.device(device)
        if not argv:
            raise ValueError(f"spawn on {device!r} got an empty argv; expected [program, args...]")
        command = [*NSEXEC, *self._launch_args(device), "--", *argv]
        full_env = {**os.environ, **self.device_env(resolved), **(env or {})}
        proc: subprocess.Popen[Any] = subprocess.Popen(command, env=full_env, **popen)
        self._procs.append(proc)
        self._device_procs.append((resolved.name, proc))
        return proc

    def device_env(self, device: ResolvedDevice) -> dict[str, str]:
        env = {
            "TESTBED_RUN_ID": self.run_id,
            "TESTBED_DEVICE": device.name,
            "TESTBED_ADDRESS": self.address(device.name),
            "TESTBED_FIDELITY": self.fidelity.level,
            "CUDA_VISIBLE_DEVICES": ",".join(map(str, self.gpu_indices.get(device.name, []))),
        }
        rate = self.configured_rate_bps(device.name)
        if rate is not None:
            env["TESTBED_LINK_RATE_BPS"] = str(rate)
        if device.threads is not None:
            env.update({var: str(device.threads) for var in THREAD_VARS})
        return env

    def stop_processes(self, timeout_s: float = 3.0) -> None:
        """SIGTERM every spawned process, then SIGKILL what is still running."""
        for proc in self._procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self._procs:
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    # -- links -----------------------------------------------------------------------------
    def update_link(
        self,
        target: Selector,
        *,
        rate: str | None = None,
        delay: str | None = None,
        jitter: str | None = None,
        loss: str | None = None,
    ) -> LinkSettings:
        """Change a link while running; unset values keep their current setting.

        Clear a delay or loss with "0ms" / "0%". Returns the link's new settings.
        """
        self._require_up()
        key = selector_of(target)
        for name in key:
            self.device(name)
        changes = LinkSettings(rate=rate, delay=delay, jitter=jitter, loss=loss)
        current = self.links.get(key, LinkSettings())
        settings = current.merged(changes)
        check_jitter(key, settings)
        self._apply_link(key, settings)
        self.links[key] = settings
        return settings

    def leave_unshaped(self, addresses: Sequence[str]) -> None:
        """Let the devices' traffic to these addresses bypass their links' shaping: for the
        host's parameter server when it only observes (the weights stage workers push for
        evaluation are not the training's traffic, and would otherwise compete with it)."""
        self._require_up()
        self.unshaped = tuple(addresses)
        self._reshape_all()

    def apply(self, entry: ScheduleEntry) -> LinkSettings | dict[str, Any]:
        """Carry out one schedule entry (the caller keeps the clock): the link's new settings
        (empty for a CPU-only entry), or a device fault (what it did). Worker faults are the
        caller's (it knows the workers)."""
        if entry.fault is None:
            if entry.cpus is not None:
                self.update_cpus(entry.selector, entry.cpus)  # type: ignore[arg-type]
            if not entry.settings():
                return LinkSettings()
            return self.update_link(entry.selector, **entry.link_settings().settings())
        if entry.device is None:
            raise ValueError(f"{entry.label}: the cluster injects device faults only")
        return self.inject(entry.device, entry.fault)

    # -- faults ----------------------------------------------------------------------------
    def inject(self, device: str, fault: str) -> dict[str, Any]:
        """kill / pause / resume every process of the device (SIGKILL, SIGSTOP, SIGCONT: a
        paused device's processes are frozen, and a killed or restarted one starts afresh), or
        take its link down / up (the link stays configured, packets stop). Returns what it did."""
        self._require_up()
        self.device(device)
        if fault in ("link-down", "link-up"):
            self._set_link_up(device, fault == "link-up")
            return {"device": device, "fault": fault}
        sig = {"kill": signal.SIGKILL, "pause": signal.SIGSTOP, "resume": signal.SIGCONT}[fault]
        pids = self.device_pids(device)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        return {"device": device, "fault": fault, "pids": pids}

    def device_pids(self, device: str) -> list[int]:
        """Host pids of the processes running as the device (what a device fault reaches):
        by default every live process this handle spawned there."""
        name = self.device(device).name
        return [p.pid for d, p in self._device_procs if d == name and p.poll() is None]

    def _set_link_up(self, device: str, up: bool) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot take a device's link down or up")

    def update_cpus(self, device: str, cpus: float) -> None:
        """Change a device's CPU quota while running (what `docker update --cpus` does)."""
        self._require_up()
        resolved = self.device(device)
        self._apply_cpus(device, cpus)
        self.devices[device] = dataclasses.replace(resolved, cpus=cpus)

    def _apply_cpus(self, device: str, cpus: float) -> None:
        raise ResourceUnavailable(
            f"device {device!r}: this backend cannot change a CPU quota at run time "
            f"(wanted {cpus}); the local backend as root and the docker backend can"
        )

    def link(self, target: Selector) -> LinkSettings | None:
        return self.links.get(selector_of(target))

    def configured_rate_bps(self, device: str) -> int | None:
        """The device's access-link rate: what a user-space shaper must apply when degraded."""
        settings = self.links.get((device,))
        return None if settings is None else settings.rate_bps

    def path_rate_bps(self, src: str, dst: str) -> int | None:
        return path_rate_bps(self.links, src, dst)

    def resource_events(self, device: str) -> CgroupEvents | None:
        """OOM kills and memory-limit hits of the device (None where nothing enforces limits)."""
        self.device(device)
        return None

    # -- power meter -----------------------------------------------------------------------
    def counter_reader(self, device: str) -> CounterReader | None:
        """The device's CPU and link counters for the power meter (None: not observable)."""
        self.device(device)
        return None

    def quota_cpus(self, device: str) -> float:
        """The CPUs the device may use: its cap, else every CPU of the host."""
        cpus = self.device(device).cpus
        return float(cpus) if cpus is not None else float(len(os.sched_getaffinity(0)))

    def meter_targets(self, rapl: bool = False) -> dict[str, MeterTarget]:
        """What the power meter samples, per device whose counters can be read."""
        targets = {}
        for name, device in self.devices.items():
            read = self.counter_reader(name)
            if read is not None:
                targets[name] = MeterTarget(
                    read, device.power, self.quota_cpus(name), rapl and device.cpus is None
                )
        return targets

    # -- lifecycle -------------------------------------------------------------------------
    def device(self, name: str) -> ResolvedDevice:
        try:
            return self.devices[name]
        except KeyError:
            raise KeyError(f"unknown device {name!r}; known: {sorted(self.devices)}") from None

    def down(self) -> None:
        """Stop processes and remove everything this cluster made. Safe to call again."""
        if self._torn_down:
            return
        self._down = True  # refuse new spawns and link changes from here on
        try:
            self.stop_processes()
        finally:
            self._teardown()
            self._torn_down = True  # not reached if teardown failed: a second down() retries

    @property
    def fidelity_level(self) -> str:
        """'full', or 'degraded: <why>' (also in the TESTBED_FIDELITY of spawned processes)."""
        return self.fidelity.level

    @property
    def is_up(self) -> bool:
        return not self._down

    def _require_up(self) -> None:
        if self._down:
            raise RuntimeError(f"cluster of run {self.run_id!r} is down")

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.down()
