"""Partition a spec's model over its cluster: devices, links and memory from the spec, unit
times from a profile; the plan, its baselines and the spec that runs it. Pure given the profile."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from testbed.emulation.profiles import ResolvedDevice
from testbed.emulation.resolve import resolve
from testbed.modes import get_mode
from testbed.planner.chain_profile import ChainSizes, ChainTimes, chain_of
from testbed.planner.partition import (
    Chain,
    Costs,
    Device,
    Order,
    PairLink,
    PartitionError,
    Plan,
    balance_by_time,
    equal_units,
    partition,
)
from testbed.spec.experiment import Spec

_RESERVED = ("ps", "teacher")


def candidate_devices(spec: Spec) -> list[str]:
    """The cluster's devices that may hold stages: all but those placed as ps or teacher."""
    if spec.cluster is None:
        raise PartitionError("the spec has no cluster; expected cluster.devices to partition "
                             "the model over")
    reserved = {v for k, v in (spec.placement or {}).items() if k in _RESERVED}
    names = [d.name for d in spec.cluster.devices if d.name not in reserved]
    if not names:
        raise PartitionError(f"every device of the cluster is placed as {list(_RESERVED)}; "
                             "expected at least one for the stages")
    return names


def device_speed(device: ResolvedDevice, threads: int) -> float:
    """Speed relative to the profile's reference (one uncapped core per intra-op thread):
    the CPU quota, capped by the threads the worker runs."""
    return float(threads) if device.cpus is None else min(device.cpus, float(threads))


def devices_of(spec: Spec, names: Sequence[str], speeds: Mapping[str, float] | None = None,
               link_bps: Mapping[str, float] | None = None) -> list[Device]:
    """Partitioner devices: speed (given, or from the quota), memory cap, access link (given
    rates, e.g. measured by the probe, else the configured ones) and latency per message."""
    assert spec.cluster is not None
    threads = spec.training.threads or 1
    links = {link.key: link for link in spec.cluster.links}
    out = []
    for name in names:
        resolved = resolve(spec.cluster.device(name))
        link = links.get((name,))
        rate = (link_bps or {}).get(name, link.rate_bps if link is not None else None)
        out.append(Device(
            name,
            speed=(speeds or {}).get(name, device_speed(resolved, threads)),
            memory_bytes=resolved.memory_bytes,
            link_bps=float(rate) if rate else None,
            latency_s=2 * link.delay_s if link is not None else 0.0,  # request out, ack back
        ))
    return out


def pair_links(spec: Spec) -> list[PairLink]:
    assert spec.cluster is not None
    return [PairLink(link.key[0], link.key[1], float(link.rate_bps), 2 * link.delay_s)
            for link in spec.cluster.links if len(link.key) == 2 and link.rate_bps]


def chain_for(spec: Spec, sizes: ChainSizes, times: ChainTimes) -> Chain:
    """The chain the spec's mode trains: bp modes have no SG modules at their split points."""
    chain = chain_of(sizes, times)
    if get_mode(spec.job.mode).receives == "sg":
        return chain
    zero = (0.0,) * (chain.n - 1)
    return Chain(chain.names, chain.unit_s, chain.out_bytes, zero, chain.memory_bytes, zero,
                 chain.stage_s, chain.stage_memory_bytes, chain.wire_s_per_byte)


@dataclass(frozen=True)
class Partitioned:
    """The partitioner's plan and the two baselines on the same costs."""

    costs: Costs
    plan: Plan
    equal: Plan
    by_time: Plan

    def as_dict(self) -> dict[str, Any]:
        chain = self.costs.chain
        return {
            "units": list(chain.names),
            "plan": plan_dict(self.plan, chain),
            "baselines": {"equal_units": plan_dict(self.equal, chain),
                          "balance_by_time": plan_dict(self.by_time, chain)},
            "devices": [d.__dict__ | {"unit_s": None, "sg_s": None}
                        for d in self.costs.devices.values()],
        }


def plan_dict(plan: Plan, chain: Chain) -> dict[str, Any]:
    return {
        "split_after": plan.split_after(chain),
        "devices": list(plan.devices),
        "bottleneck_s": plan.bottleneck_s,
        "bound_it_s": plan.it_s,
        "stages": [{"device": s.device, "units": list(chain.names[s.first:s.last + 1]),
                    "compute_s": s.compute_s, "link_s": s.link_s, "time_s": s.time_s,
                    "memory_bytes": s.memory_bytes} for s in plan.stages],
        "pair_link_s": list(plan.pair_s),
    }


def partition_spec(costs: Costs, stages: int | None, order: Order = "fixed") -> Partitioned:
    """Plan, and the baselines with as many stages as the plan uses."""
    plan = partition(costs, stages, order)
    k = len(plan.stages)
    return Partitioned(costs, plan, equal_units(costs, k), balance_by_time(costs, k))


def planned_spec(spec: Spec, plan: Plan, chain: Chain) -> Spec:
    """The spec with the plan's split and its stage -> device placement (ps etc. kept)."""
    kept = {k: v for k, v in (spec.placement or {}).items() if not k.isdigit()}
    placement = {**kept, **{str(i): d for i, d in enumerate(plan.devices)}}
    model = spec.model.model_copy(update={"split_after": plan.split_after(chain)})
    return spec.model_copy(update={"model": model, "placement": placement})
