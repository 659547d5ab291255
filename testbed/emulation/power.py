"""The power model of an emulated device, and the integrator that turns usage samples into energy.

Pure: no files, clocks or threads. The meter (`emulation.meter`) reads each device's counters
(CPU seconds of its cgroup, bytes of its link) and feeds them here.

    P = P_idle + (P_busy - P_idle) * utilisation + e_tx * tx_bits/s + e_rx * rx_bits/s

with utilisation the device's CPU use as a share of its quota (its CPU cap; the host's cores
when uncapped), clipped to [0, 1]. It is a model of the board the device stands for, the
emulation's ground truth, never a measurement of this host (see `rapl` for that).

Radio energy per bit (J/bit) comes from Huang et al., "A Close Examination of Performance and
Power Characteristics of 4G LTE Networks", MobiSys 2012, Table 4 (the slopes of their power
model, mW per Mbit/s = nJ/bit): WiFi 283.17 up / 137.01 down, LTE 438.39 up / 51.97 down.
Wired links cost nothing per bit here (their power is in the board's idle figure).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

NANO = 1e-9

RADIO_SOURCE = "Huang et al., MobiSys 2012, Table 4 (power-model slopes, mW per Mbit/s)"
RADIOS: dict[str, tuple[float, float]] = {
    "wired": (0.0, 0.0),
    "wifi": (283.17 * NANO, 137.01 * NANO),
    "lte": (438.39 * NANO, 51.97 * NANO),
}
"""Radio kind -> (J per bit sent, J per bit received)."""


@dataclass(frozen=True)
class PowerModel:
    """A device's power as a function of its CPU utilisation and its link's bit rates."""

    idle_w: float
    busy_w: float
    radio: str = "wired"
    tx_j_per_bit: float = 0.0
    rx_j_per_bit: float = 0.0
    source: str = ""

    def __post_init__(self) -> None:
        if not 0 <= self.idle_w <= self.busy_w:
            raise ValueError(
                f"power model: got idle_w {self.idle_w} and busy_w {self.busy_w}; "
                "expected 0 <= idle_w <= busy_w"
            )
        if self.tx_j_per_bit < 0 or self.rx_j_per_bit < 0:
            raise ValueError("power model: energy per bit must be >= 0")

    def power_w(self, utilisation: float, tx_bps: float = 0.0, rx_bps: float = 0.0) -> float:
        """Watts at this utilisation (clipped to [0, 1]) and these link rates (bit/s)."""
        busy = min(1.0, max(0.0, utilisation))
        radio = self.tx_j_per_bit * tx_bps + self.rx_j_per_bit * rx_bps
        return self.idle_w + (self.busy_w - self.idle_w) * busy + radio

    def with_radio(self, radio: str) -> PowerModel:
        """The same board behind another kind of link (its J/bit from `RADIOS`)."""
        tx, rx = radio_costs(radio)
        return replace(self, radio=radio, tx_j_per_bit=tx, rx_j_per_bit=rx)

    def as_dict(self) -> dict[str, float | str]:
        return {
            "idle_w": self.idle_w,
            "busy_w": self.busy_w,
            "radio": self.radio,
            "tx_nj_per_bit": self.tx_j_per_bit / NANO,
            "rx_nj_per_bit": self.rx_j_per_bit / NANO,
            "source": self.source,
        }


def radio_costs(radio: str) -> tuple[float, float]:
    try:
        return RADIOS[radio]
    except KeyError:
        raise ValueError(
            f"radio {radio!r} is not known; expected one of {sorted(RADIOS)}"
        ) from None


@dataclass(frozen=True)
class Usage:
    """A device's cumulative counters at one instant: CPU seconds and link bytes."""

    t: float  # seconds, any monotonic clock
    cpu_s: float
    tx_bytes: int = 0
    rx_bytes: int = 0


@dataclass(frozen=True)
class Sample:
    """Power over one interval between two usage readings, and the energy so far."""

    t: float
    dt: float
    utilisation: float
    tx_bps: float
    rx_bps: float
    power_w: float
    energy_j: float
    cpu_s: float


@dataclass
class Integrator:
    """Integrates a device's power over successive usage readings (left-to-right, exact for
    the piecewise-constant utilisation between readings).

    `quota_cpus` is the share of the host the device may use (its CPU cap, else the host's
    cores); utilisation = CPU seconds used / (quota_cpus x elapsed seconds).
    """

    model: PowerModel
    quota_cpus: float
    energy_j: float = 0.0
    last: Usage | None = None
    samples: int = 0
    marks: dict[str, tuple[float, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.quota_cpus <= 0:
            raise ValueError(f"quota_cpus: got {self.quota_cpus}; expected > 0")

    def feed(self, usage: Usage) -> Sample | None:
        """Account the interval since the previous reading; None for the first one."""
        previous, self.last = self.last, usage
        if previous is None:
            return None
        dt = usage.t - previous.t
        if dt <= 0:
            self.last = previous
            return None
        util = max(0.0, usage.cpu_s - previous.cpu_s) / (self.quota_cpus * dt)
        tx = max(0, usage.tx_bytes - previous.tx_bytes) * 8 / dt
        rx = max(0, usage.rx_bytes - previous.rx_bytes) * 8 / dt
        power = self.model.power_w(util, tx, rx)
        self.energy_j += power * dt
        self.samples += 1
        return Sample(usage.t, dt, min(1.0, util), tx, rx, power, self.energy_j, usage.cpu_s)

    def mark(self, name: str) -> None:
        """Remember the energy and time now, e.g. at the start and end of training."""
        t = self.last.t if self.last is not None else 0.0
        self.marks[name] = (t, self.energy_j)

    def between(self, start: str, end: str) -> tuple[float, float]:
        """(seconds, joules) between two marks."""
        (t0, e0), (t1, e1) = self.marks[start], self.marks[end]
        return t1 - t0, e1 - e0


def edp(energy_j: float, seconds: float) -> float:
    """Energy-delay product (J*s)."""
    return energy_j * seconds


def resolve_power(base: PowerModel | None, override: Any | None) -> PowerModel | None:
    """The profile's power model with the spec's fields (a `config.PowerSpec`) over it (None: no
    model at all)."""
    if override is None:
        return base
    fields = override.model_dump(exclude_none=True)
    if base is None and not {"idle_w", "busy_w"} <= set(fields):
        raise ValueError(
            f"power: got {fields}; this device's profile has no power model, so both idle_w "
            "and busy_w are needed"
        )
    radio = fields.pop("radio", None)
    model = base or PowerModel(idle_w=fields["idle_w"], busy_w=fields["busy_w"])
    if radio is not None:
        model = model.with_radio(radio)
    nano = {k: fields.pop(k) * 1e-9 for k in ("tx_nj_per_bit", "rx_nj_per_bit") if k in fields}
    changed = {**fields, **{k.replace("_nj_", "_j_"): v for k, v in nano.items()}}
    source = f"{model.source}; overridden in the spec: {override.model_dump(exclude_none=True)}"
    return replace(model, **changed, source=source.lstrip("; "))
