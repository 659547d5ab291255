"""How faithfully a backend realises the spec: its level, notes, and measured link probes."""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

from testbed.emulation.units import format_rate

FULL = "full"
DEGRADED_NO_ROOT = "degraded: no root"
WARN_TOLERANCE = 0.05
# bytes on the wire per segment besides TCP payload: Ethernet 14 + IPv4 20 + TCP 20
# + timestamps option 12 (the qdisc counts the Ethernet header; MSS excludes options)
ETH_HEADER = 14


class FidelityWarning(UserWarning):
    """A measured link rate is off from the configured one by more than the tolerance."""


@dataclass(frozen=True)
class ProbeResult:
    """One bulk TCP transfer across a shaped path, compared with the configured rate."""

    src: str
    dst: str
    configured_bps: int
    payload_bytes: int
    duration_s: float
    mss: int
    mtu: int

    @property
    def goodput_bps(self) -> float:
        return self.payload_bytes * 8 / self.duration_s

    @property
    def wire_bps(self) -> float:
        """Goodput plus the per-frame headers the shaper counts: what `rate` limits."""
        return self.goodput_bps * (self.mtu + ETH_HEADER) / self.mss

    @property
    def ratio(self) -> float:
        return self.wire_bps / self.configured_bps

    def within(self, tolerance: float) -> bool:
        return abs(self.ratio - 1) <= tolerance

    def describe(self) -> str:
        return (
            f"{self.src}->{self.dst}: configured {format_rate(self.configured_bps)}, "
            f"achieved {format_rate(self.wire_bps)} on the wire "
            f"({format_rate(self.goodput_bps)} TCP goodput), ratio {self.ratio:.3f}"
        )

    def to_dict(self) -> dict[str, Any]:
        extra = {"goodput_bps": self.goodput_bps, "wire_bps": self.wire_bps, "ratio": self.ratio}
        return {**asdict(self), **extra}


@dataclass
class Fidelity:
    """The level a cluster runs at ('full' or 'degraded: ...'), why, and what was measured."""

    level: str
    netem: bool | None = None  # None: not known (degraded mode does not probe the kernel)
    notes: list[str] = field(default_factory=list)
    probes: list[ProbeResult] = field(default_factory=list)

    def record(self, result: ProbeResult, tolerance: float = WARN_TOLERANCE) -> None:
        """Keep a probe result; warn when it is off by more than the tolerance."""
        self.probes.append(result)
        if not result.within(tolerance):
            message = f"link fidelity off by more than {tolerance:.0%}: {result.describe()}"
            self.notes.append(message)
            warnings.warn(message, FidelityWarning, stacklevel=2)

    def to_dict(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "netem": self.netem,
            "notes": list(self.notes),
            "probes": [p.to_dict() for p in self.probes],
        }
