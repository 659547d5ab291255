"""Time, power, energy and EDP of one cluster configuration, from measured profiles only.

Pure. The model, for a configuration with the parameter server on device p:

- a remote worker j steps in  w_j + 2 * latency + pull_bits / bw_pull + push_bits / bw_push
  + k * s_p  (w_j: its own seconds per step; s_p: the server's seconds on p per step, k = 2
  while p's own worker shares p's quota with it); bw on p's access link is shared by the remote
  workers in proportion to the time each spends transferring (a fixed point);
- p's own worker gets what the server leaves of p's quota: r_p = (1 - s_p * sum_j r_j) / T_p;
- the total time is the seed's eq. (4) under dynamic assignment (`schedule`), each worker's first
  step longer by its tracing (and a remote one's by a first pull that all remote workers make
  together over the server's link), after the startup (the slowest device's processes, from
  their CPU at ready and the device's quota);
- power is each device's fitted `PowerFit` at its predicted utilisation and bit rates (never
  the meter); energy is power over the time each device is busy, idle power after; EDP = E x T.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from testbed.planner.cluster import Config, DeviceProfile, Links, Workload
from testbed.planner.costs import Costs
from testbed.planner.schedule import dynamic_schedule

_ITERATIONS = 50


@dataclass(frozen=True)
class Estimate(Costs):
    """One configuration's predicted numbers (seconds, watts, joules)."""

    config: Config
    rates: dict[str, float]
    steps: dict[str, int]
    startup_s: float
    train_s: float
    energy_j: float
    device_power_w: dict[str, float] = field(default_factory=dict)
    device_energy_j: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {"config": self.config.label, "ps": self.config.ps, **self.costs(),
                "rates": self.rates,
                "device_power_w": self.device_power_w,
                "device_energy_j": self.device_energy_j}  # fmt: skip


def step_rates(
    config: Config,
    profiles: Mapping[str, DeviceProfile],
    links: Links,
    work: Workload,
) -> dict[str, float]:
    """Steps per second of each worker of the configuration (fixed point of the model above)."""
    p = config.ps
    host = profiles[p]
    remote = [d for d in config.devices if d != p]
    share = 2.0 if p in config.devices else 1.0
    rates = {d: 1.0 / profiles[d].step_s for d in config.devices}
    for _ in range(_ITERATIONS):
        new = {}
        for j in remote:
            t = profiles[j].worker_step_s + share * host.ps_step_s + _transfer_s(j, rates, config,
                                                                                 links, work)
            new[j] = 1.0 / t
        left = 1.0 - host.ps_step_s * sum(new.values())
        new[p] = max(left, 0.0) / host.step_s
        if left < 0:  # the server alone saturates p: remote workers wait for it
            scale = 1.0 / (host.ps_step_s * sum(new[j] for j in remote))
            new.update({j: new[j] * scale for j in remote})
        rates = {d: 0.5 * rates[d] + 0.5 * new[d] for d in config.devices}  # damped
    return rates


def _transfer_s(
    j: str, rates: Mapping[str, float], config: Config, links: Links, work: Workload
) -> float:
    """Seconds worker j spends moving the model down and its gradients up per step."""
    bits = 8 * (work.pull_bytes + work.push_bytes)
    return 2 * links.latency_s + bits / _bandwidth(j, rates, config, links, work)


def _bandwidth(
    j: str, rates: Mapping[str, float], config: Config, links: Links, work: Workload
) -> float:
    """Bit/s worker j gets at the steady pace: its own link, or its share of the server's."""
    p = config.ps
    others = [k for k in config.devices if k not in (j, p)]
    busy = sum(rates[k] * 8 * work.pull_bytes / links.rate(p) for k in others)  # p's link in use
    return min(links.rate(j), links.rate(p) / (1.0 + min(busy, len(others))))


def first_steps_s(
    config: Config,
    profiles: Mapping[str, DeviceProfile],
    links: Links,
    work: Workload,
    rates: Mapping[str, float],
) -> dict[str, float]:
    """Extra seconds of each worker's first step over its steady one. On the server's host, what
    its profile measured there (worker and server starting on one quota). A remote worker: its
    own tracing, plus its first pull, which every remote worker makes at once, so the server's
    link is shared n ways (later pulls interleave: `_bandwidth`)."""
    p = config.ps
    remote = [d for d in config.devices if d != p]
    out = {p: profiles[p].first_step_s}
    bits = 8 * work.pull_bytes
    for j in remote:
        together = bits / min(links.rate(j), links.rate(p) / len(remote))
        steady = bits / _bandwidth(j, rates, config, links, work)
        out[j] = profiles[j].trace_s + max(0.0, together - steady)
    return out


def utilisation(
    config: Config, profiles: Mapping[str, DeviceProfile], rates: Mapping[str, float]
) -> dict[str, float]:
    """Each device's CPU use as a share of its quota while training at these rates."""
    p, total = config.ps, sum(rates.values())
    out = {}
    for d in config.devices:
        prof = profiles[d]
        cpu = rates[d] * prof.worker_cpu_s + (total * prof.ps_cpu_s if d == p else 0.0)
        out[d] = min(1.0, cpu / prof.quota_cpus)
    return out


def startup_s(config: Config, profiles: Mapping[str, DeviceProfile]) -> dict[str, float]:
    """Seconds until each device's processes are ready: their CPU to ready at the device's
    quota and startup utilisation (the server's too on its host)."""
    out = {}
    for d in config.devices:
        prof = profiles[d]
        cpu = prof.startup_cpu_s.get("worker", 0.0)
        cpu += prof.startup_cpu_s.get("ps", 0.0) if d == config.ps else 0.0
        out[d] = cpu / (prof.quota_cpus * prof.startup_util)
    return out


def estimate(
    config: Config, profiles: Mapping[str, DeviceProfile], links: Links, work: Workload
) -> Estimate:
    """Predicted time, power, energy and EDP of running `work` on `config`."""
    rates = step_rates(config, profiles, links, work)
    live = {d: r for d, r in rates.items() if r > 0}
    first = first_steps_s(config, profiles, links, work, rates)
    sched = dynamic_schedule({d: 1.0 / r for d, r in live.items()}, work.steps, first)
    util = utilisation(config, profiles, rates)
    boot = startup_s(config, profiles)
    boot_all = max(boot.values())
    power, energy = {}, {}
    for d in config.devices:
        fit = profiles[d].power
        tx, rx = _bit_rates(d, config, rates, work)
        power[d] = fit.power_w(util[d], tx, rx)
        busy = sched.busy_until.get(d, 0.0)
        starting = fit.power_w(profiles[d].startup_util) * boot[d]
        energy[d] = (starting + fit.idle_w * (boot_all - boot[d]) + power[d] * busy
                     + fit.idle_w * (sched.makespan - busy))  # fmt: skip
    return Estimate(config, dict(rates), sched.steps, boot_all, sched.makespan,
                    sum(energy.values()), power, energy)  # fmt: skip


def _bit_rates(
    d: str, config: Config, rates: Mapping[str, float], work: Workload
) -> tuple[float, float]:
    """(sent, received) bit/s of device d's link: remote workers pull and push over it."""
    if d != config.ps:
        return 8 * work.push_bytes * rates[d], 8 * work.pull_bytes * rates[d]
    remote = sum(r for k, r in rates.items() if k != d)
    return 8 * work.pull_bytes * remote, 8 * work.push_bytes * remote
