"""Partition a chain of units over unequal devices and links: the pipeline's slowest stage, minimised.

Pure functions over measured numbers. A stage is a contiguous run of units on one device; per
step it computes (its units, the SG module at its end, the CPU its messages cost), and its
device's access link carries its activation forward and its gradient back (latency + bytes /
bandwidth, each direction at once). A pair link between two neighbouring stages' devices carries
their boundary's activation and gradient. Compute and transfer overlap (the runtime sends from
outboxes), so a stage's time is the larger of the two, and the pipeline (sg, bp-pipeline) runs
at 1 / the slowest stage or pair link. Memory caps are constraints.

`partition` is dynamic programming over (devices used, last device, last unit), as PipeDream's
optimizer is over (stages, units); `exhaustive` enumerates every plan and is the reference the
DP is tested against on small chains. `equal_units` and `balance_by_time` are the baselines.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

from testbed.planner.balance import balance_split

Order = Literal["fixed", "free"]
INF = math.inf


class PartitionError(ValueError):
    """No plan satisfies the constraints; the message names the constraint and the numbers."""


@dataclass(frozen=True)
class Chain:
    """The model as a chain of units, timed on a reference device.

    unit_s[u]: seconds per step of unit u (sg: forward + backward + update); sg_s[u] (u < n-1):
    the SG module's update at a split after u; out_bytes[u] (u < n-1): the activation after u
    per step (its gradient is as large); memory_bytes[u]: what unit u needs on a device (weights,
    optimizer state, activations); sg_memory_bytes[u]: the SG module's at a split after u.
    stage_s: fixed seconds per stage and step (call overheads); stage_memory_bytes: per worker
    (the framework); wire_s_per_byte: transport CPU per byte sent or received.
    """

    names: tuple[str, ...]
    unit_s: tuple[float, ...]
    out_bytes: tuple[float, ...]
    sg_s: tuple[float, ...] = ()
    memory_bytes: tuple[float, ...] = ()
    sg_memory_bytes: tuple[float, ...] = ()
    stage_s: float = 0.0
    stage_memory_bytes: float = 0.0
    wire_s_per_byte: float = 0.0

    def __post_init__(self) -> None:
        n = len(self.names)
        if n == 0:
            raise PartitionError("chain: no units; expected at least one")
        expect = {"unit_s": n, "out_bytes": n - 1, "sg_s": n - 1, "memory_bytes": n,
                  "sg_memory_bytes": n - 1}  # fmt: skip
        for name, length in expect.items():
            values = getattr(self, name)
            if not values and name != "unit_s" and name != "out_bytes":
                object.__setattr__(self, name, (0.0,) * length)
                continue
            if len(values) != length:
                raise PartitionError(f"chain.{name}: got {len(values)} values, expected {length}")
            bad = [v for v in values if not (math.isfinite(v) and v >= 0)]
            if bad:
                raise PartitionError(f"chain.{name}: got {bad[0]!r}, expected finite values >= 0")

    @property
    def n(self) -> int:
        return len(self.names)


@dataclass(frozen=True)
class Device:
    """One device: its speed relative to the chain's reference, memory cap, access link.

    unit_s / sg_s / stage_s / wire_s_per_byte, when given, are measured on this device's class
    and replace the chain's reference / speed. link_bps None: unshaped (free); latency_s: per
    message on the link.
    """

    name: str
    speed: float = 1.0
    memory_bytes: float | None = None
    link_bps: float | None = None
    latency_s: float = 0.0
    unit_s: tuple[float, ...] | None = None
    sg_s: tuple[float, ...] | None = None
    stage_s: float | None = None
    wire_s_per_byte: float | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.speed) and self.speed > 0):
            raise PartitionError(f"device {self.name!r}: speed {self.speed!r}; expected > 0")
        if self.link_bps is not None and not self.link_bps > 0:
            raise PartitionError(f"device {self.name!r}: link_bps {self.link_bps!r}; "
                                 "expected > 0 or None (unshaped)")


@dataclass(frozen=True)
class PairLink:
    """The path between two devices, shaped on its own (in addition to their access links)."""

    a: str
    b: str
    bps: float
    latency_s: float = 0.0


@dataclass(frozen=True)
class StageCost:
    """One stage of a plan: its device, units [first, last], and predicted seconds per step."""

    device: str
    first: int
    last: int
    compute_s: float
    link_s: float
    memory_bytes: float

    @property
    def time_s(self) -> float:
        return max(self.compute_s, self.link_s)


@dataclass(frozen=True)
class Plan:
    """A partition: stages in pipeline order, the pair links' times, the bottleneck."""

    stages: tuple[StageCost, ...]
    pair_s: tuple[float, ...] = field(default=())

    @property
    def bottleneck_s(self) -> float:
        return max([s.time_s for s in self.stages] + list(self.pair_s))

    @property
    def it_s(self) -> float:
        return 1.0 / self.bottleneck_s if self.bottleneck_s > 0 else INF

    @property
    def devices(self) -> tuple[str, ...]:
        return tuple(s.device for s in self.stages)

    @property
    def ends(self) -> tuple[int, ...]:
        """Index of the last unit of every stage but the last (the split points)."""
        return tuple(s.last for s in self.stages[:-1])

    def split_after(self, chain: Chain) -> list[str]:
        return [chain.names[i] for i in self.ends]


class Costs:
    """The cost model, shared by the DP, the exhaustive search and the baselines."""

    def __init__(self, chain: Chain, devices: Sequence[Device],
                 pairs: Sequence[PairLink] = ()) -> None:
        names = [d.name for d in devices]
        if len(set(names)) != len(names) or not names:
            raise PartitionError(f"devices: got {names}; expected distinct names, at least one")
        self.chain, self.devices = chain, {d.name: d for d in devices}
        self.order = names
        for d in devices:
            for what, times, size in (("unit_s", d.unit_s, chain.n), ("sg_s", d.sg_s, chain.n - 1)):
                if times is not None and len(times) != size:
                    raise PartitionError(f"device {d.name!r}.{what}: got {len(times)} values, "
                                         f"expected {size}")
        self.pairs = {frozenset((p.a, p.b)): p for p in pairs}
        self._prefix = {d.name: _prefix(self._unit_times(d)) for d in devices}
        self._mem = _prefix(chain.memory_bytes)

    def _unit_times(self, d: Device) -> Sequence[float]:
        return d.unit_s if d.unit_s is not None else [t / d.speed for t in self.chain.unit_s]

    def _sg(self, d: Device, last: int) -> float:
        if last >= self.chain.n - 1:
            return 0.0
        return d.sg_s[last] if d.sg_s is not None else self.chain.sg_s[last] / d.speed

    def boundary_bytes(self, first: int, last: int) -> tuple[float, float]:
        """Activation bytes per step into the stage (0 for the first) and out of it."""
        c = self.chain
        return (c.out_bytes[first - 1] if first > 0 else 0.0,
                c.out_bytes[last] if last < c.n - 1 else 0.0)

    def stage(self, device: str, first: int, last: int) -> StageCost:
        """Units first..last on `device`: compute, access-link and memory predictions."""
        d, c = self.devices[device], self.chain
        a_in, a_out = self.boundary_bytes(first, last)
        per_byte = _own(d.wire_s_per_byte, c.wire_s_per_byte, d.speed)
        wire = 2.0 * (a_in + a_out) * per_byte  # each boundary: there and back
        compute = (self._prefix[device][last + 1] - self._prefix[device][first]
                   + self._sg(d, last) + _own(d.stage_s, c.stage_s, d.speed) + wire)
        messages = (first > 0) + (last < c.n - 1)
        link = 0.0
        if d.link_bps is not None:  # uplink: activation out + gradient in; downlink the same
            link = (a_in + a_out) * 8.0 / d.link_bps + messages * d.latency_s
        memory = (self._mem[last + 1] - self._mem[first] + c.stage_memory_bytes
                  + (c.sg_memory_bytes[last] if last < c.n - 1 else 0.0))
        return StageCost(device, first, last, compute, link, memory)

    def fits(self, s: StageCost) -> bool:
        cap = self.devices[s.device].memory_bytes
        return cap is None or s.memory_bytes <= cap

    def pair(self, a: str, b: str, boundary: int) -> float:
        """Seconds per step on the pair link between a and b for the split after `boundary`."""
        p = self.pairs.get(frozenset((a, b)))
        if p is None:
            return 0.0
        return self.chain.out_bytes[boundary] * 8.0 / p.bps + p.latency_s

    def plan(self, devices: Sequence[str], ends: Sequence[int]) -> Plan:
        """The plan placing stage k (ending after ends[k], the last at the chain's end) on
        devices[k]; PartitionError when the ends are not increasing unit indices."""
        n = self.chain.n
        bounds = [*ends, n - 1]
        if len(bounds) != len(devices) or list(bounds) != sorted(set(bounds)) or bounds[0] < 0:
            raise PartitionError(f"plan: ends {list(ends)} over devices {list(devices)}; "
                                 f"expected {len(devices) - 1} increasing unit indices < {n - 1}")
        stages, first = [], 0
        for device, last in zip(devices, bounds, strict=True):
            stages.append(self.stage(device, first, last))
            first = last + 1
        pair_s = tuple(self.pair(a.device, b.device, a.last)
                       for a, b in zip(stages, stages[1:], strict=False))
        return Plan(tuple(stages), pair_s)

    def feasible(self, plan: Plan) -> bool:
        return all(self.fits(s) for s in plan.stages)


def _own(measured: float | None, reference: float, speed: float) -> float:
    """The device's own measured value, else the reference's scaled by its speed."""
    return measured if measured is not None else reference / speed


def _prefix(values: Sequence[float]) -> list[float]:
    out = [0.0]
    for v in values:
        out.append(out[-1] + v)
    return out


def _stage_counts(costs: Costs, stages: int | None) -> range:
    d, n = len(costs.order), costs.chain.n
    if stages is None:
        return range(1, min(d, n) + 1)
    if not 1 <= stages <= min(d, n):
        raise PartitionError(f"stages: got {stages}, expected 1..{min(d, n)} "
                             f"({d} devices, {n} units)")
    return range(stages, stages + 1)


def partition(costs: Costs, stages: int | None = None, order: Order = "fixed") -> Plan:
    """The plan with the smallest bottleneck (ties: fewest stages, then earliest found).

    order 'fixed': stages use the devices in the given order (skipping some unless `stages`
    equals their number); 'free': any devices in any order. stages None: any count.
    """
    counts = _stage_counts(costs, stages)
    n, names = costs.chain.n, costs.order
    index = {d: k for k, d in enumerate(names)}
    # best[(used, last_device, last_unit, count)] = (bottleneck, previous state, stage)
    best: dict[tuple[int, str, int, int], tuple[float, tuple | None, StageCost]] = {}
    for j in range(n):
        for d in names:
            s = costs.stage(d, 0, j)
            if costs.fits(s):
                best[(1 << index[d], d, j, 1)] = (s.time_s, None, s)
    for count in range(2, counts.stop):
        layer = [k for k in best if k[3] == count - 1]
        for used, prev, i, _ in layer:
            value = best[(used, prev, i, count - 1)][0]
            for d in _next_devices(names, used, prev, index, order):
                for j in range(i + 1, n):
                    s = costs.stage(d, i + 1, j)
                    if not costs.fits(s):
                        continue
                    v = max(value, s.time_s, costs.pair(prev, d, i))
                    key = (used | 1 << index[d], d, j, count)
                    if key not in best or v < best[key][0]:
                        best[key] = (v, (used, prev, i, count - 1), s)
    ends = [k for k in best if k[2] == n - 1 and k[3] in counts]
    if not ends:
        raise PartitionError(_infeasible(costs, counts))
    key = min(ends, key=lambda k: (best[k][0], k[3]))
    stages_out = []
    state: tuple | None = key
    while state is not None:
        _, state, s = best[state]  # type: ignore[index]
        stages_out.append(s)
    stages_out.reverse()
    return costs.plan([s.device for s in stages_out], [s.last for s in stages_out[:-1]])


def _next_devices(names: list[str], used: int, prev: str, index: dict[str, int],
                  order: Order) -> list[str]:
    if order == "fixed":
        return names[index[prev] + 1 :]
    return [d for d in names if not used & 1 << index[d]]


def plans(costs: Costs, stages: int | None = None, order: Order = "fixed") -> Iterator[Plan]:
    """Every plan (device sequence x split), feasible or not."""
    n, names = costs.chain.n, costs.order
    for k in _stage_counts(costs, stages):
        seqs = (itertools.combinations(names, k) if order == "fixed"
                else itertools.permutations(names, k))
        for devices in seqs:
            for ends in itertools.combinations(range(n - 1), k - 1):
                yield costs.plan(devices, ends)


def exhaustive(costs: Costs, stages: int | None = None, order: Order = "fixed") -> Plan:
    """The best feasible plan by enumerating all of them: the DP's reference on small chains."""
    best: Plan | None = None
    for p in plans(costs, stages, order):
        if costs.feasible(p) and (best is None or
                                  (p.bottleneck_s, len(p.stages)) <
                                  (best.bottleneck_s, len(best.stages))):
            best = p
    if best is None:
        raise PartitionError(_infeasible(costs, _stage_counts(costs, stages)))
    return best


def equal_units(costs: Costs, stages: int) -> Plan:
    """Baseline: the same number of units per stage (the first stages take the remainder),
    on the first `stages` devices in order."""
    n = costs.chain.n
    _stage_counts(costs, stages)
    sizes = [n // stages + (k < n % stages) for k in range(stages)]
    ends = list(itertools.accumulate(sizes))[:-1]
    return costs.plan(costs.order[:stages], [e - 1 for e in ends])


def balance_by_time(costs: Costs, stages: int) -> Plan:
    """Baseline (torchgpipe's balance_by_time): stages balanced on the reference unit times and
    SG costs as if every device were the reference and links free; placed on devices in order."""
    _stage_counts(costs, stages)
    c = costs.chain
    return costs.plan(costs.order[:stages], balance_split(c.unit_s, stages, c.sg_s).splits)


def _infeasible(costs: Costs, counts: range) -> str:
    """Why no plan fits: the unit that fits no device alone, else the caps are too small."""
    caps = {d: costs.devices[d].memory_bytes for d in costs.order}
    for u in range(costs.chain.n):
        if not any(costs.fits(costs.stage(d, u, u)) for d in costs.order):
            need = min(costs.stage(d, u, u).memory_bytes for d in costs.order)
            return (f"unit {costs.chain.names[u]!r} needs {need / 2**20:.1f} MiB on its own, more "
                    f"than any device's memory cap {_mib(caps)}; expected a device that holds it")
    return (f"no split of {costs.chain.n} units into {counts.start}..{counts.stop - 1} stages fits "
            f"the devices' memory caps {_mib(caps)}; expected larger caps or more devices")


def _mib(caps: dict[str, float | None]) -> str:
    return "{" + ", ".join(f"{d}: {'none' if c is None else f'{c / 2**20:.0f} MiB'}"
                           for d, c in caps.items()) + "}"
