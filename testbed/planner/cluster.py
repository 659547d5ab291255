"""What the cluster planner knows: measured device profiles, links, the workload, configurations.

Pure data and the enumeration of configurations (the seed's: every non-empty subset of the
feasible devices, the parameter server on the subset's fastest device).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class PowerFit:
    """A device's power as a linear function of its counters, fitted on profiling samples:
    P = idle_w + per_util_w * utilisation + tx_j_per_bit * tx_bps + rx_j_per_bit * rx_bps."""

    idle_w: float
    per_util_w: float
    tx_j_per_bit: float = 0.0
    rx_j_per_bit: float = 0.0
    residual_w: float = 0.0  # RMS error of the fit on its samples

    def power_w(self, utilisation: float, tx_bps: float = 0.0, rx_bps: float = 0.0) -> float:
        util = min(1.0, max(0.0, utilisation))
        return (self.idle_w + self.per_util_w * util + self.tx_j_per_bit * tx_bps
                + self.rx_j_per_bit * rx_bps)  # fmt: skip


@dataclass(frozen=True)
class DeviceProfile:
    """One device, measured alone with the parameter server on it (a one-device dp-async run).

    step_s: wall seconds per step in the time window; worker_cpu_s / ps_cpu_s: CPU seconds per
    step of the worker process and of the parameter server (the device's cgroup less the worker);
    startup_s: launch to the start of training; startup_cpu_s: CPU each process used until ready
    ("worker", "ps"); first_step_s: the warm-up steps' extra seconds (tracing) over step_s each,
    on this device as the server's host; trace_s: the worker's own extra compute seconds of its
    first steps (its tracing), what a remote worker on this device pays before its steady pace.
    """

    name: str
    quota_cpus: float
    step_s: float
    worker_cpu_s: float
    ps_cpu_s: float
    startup_s: float
    startup_cpu_s: Mapping[str, float]
    power: PowerFit
    first_step_s: float = 0.0
    trace_s: float = 0.0
    peak_memory_bytes: int = 0
    feasible: bool = True
    reason: str = ""

    @property
    def efficiency(self) -> float:
        """CPU used per second of quota while training alone (1.0: CPU-bound throughout)."""
        used = (self.worker_cpu_s + self.ps_cpu_s) / (self.quota_cpus * self.step_s)
        return min(1.0, max(used, 1e-3))

    @property
    def worker_step_s(self) -> float:
        """Seconds of a step of the worker alone (its share of the alone step time)."""
        return self.worker_cpu_s / (self.quota_cpus * self.efficiency)

    @property
    def ps_step_s(self) -> float:
        """Seconds of the device's quota the parameter server needs per applied step."""
        return self.ps_cpu_s / (self.quota_cpus * self.efficiency)

    @property
    def startup_util(self) -> float:
        """Quota share used while starting up alone (PS + worker)."""
        cpu = sum(self.startup_cpu_s.values())
        return min(1.0, max(cpu / (self.quota_cpus * self.startup_s), 1e-3))


@dataclass(frozen=True)
class Links:
    """Each device's access link as measured by the probe (bit/s; None: unshaped) and the
    one-way latency the RPCs pay (seconds)."""

    bandwidth_bps: Mapping[str, float | None]
    latency_s: float = 0.0
    unshaped_bps: float = 10e9  # what an unshaped (veth) path carries, for the arithmetic

    def rate(self, device: str) -> float:
        bps = self.bandwidth_bps.get(device)
        return self.unshaped_bps if bps is None else float(bps)


@dataclass(frozen=True)
class Workload:
    """dp-async: `steps` steps; each pulls the model and pushes its gradients (wire bytes)."""

    steps: int
    pull_bytes: int
    push_bytes: int


@dataclass(frozen=True)
class Config:
    """A cluster configuration: the devices that train and the one holding the server."""

    devices: tuple[str, ...]
    ps: str

    @property
    def label(self) -> str:
        return "+".join(self.devices)


@dataclass(frozen=True)
class Infeasible:
    """A configuration that cannot run, and why (a device cannot hold the model)."""

    config: Config
    reason: str


@dataclass
class Enumeration:
    feasible: list[Config] = field(default_factory=list)
    infeasible: list[Infeasible] = field(default_factory=list)


def fastest(devices: Sequence[str], profiles: Mapping[str, DeviceProfile]) -> str:
    """The device with the shortest alone step time (the seed's parameter-server host)."""
    return min(devices, key=lambda d: (profiles[d].step_s, devices.index(d)))


def enumerate_configs(profiles: Mapping[str, DeviceProfile]) -> Enumeration:
    """Every non-empty subset of the devices (2^n - 1, in size then name order), the server on
    its fastest device; subsets with a device that cannot hold the model are infeasible."""
    names = list(profiles)
    out = Enumeration()
    for size in range(1, len(names) + 1):
        for subset in itertools.combinations(names, size):
            bad = [d for d in subset if not profiles[d].feasible]
            if bad:
                reasons = "; ".join(f"{d}: {profiles[d].reason}" for d in bad)
                out.infeasible.append(Infeasible(Config(subset, subset[0]), reasons))
                continue
            out.feasible.append(Config(subset, fastest(list(subset), profiles)))
    return out
