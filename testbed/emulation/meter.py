"""The emulated power meter: a thread that samples every device's counters at >= 10 Hz, feeds
each device's power model (`emulation.power`) and emits one point per device per interval.

The power it reports is the model of the board each device stands for (the emulation's ground
truth), not a measurement of this host; every point and the summary say so. Where the host has
RAPL, uncapped devices also carry the host's real package power beside the model (`rapl`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from testbed.emulation.power import Integrator, PowerModel, Sample, Usage, edp
from testbed.emulation.rapl import Rapl
from testbed.emulation.usage import CounterReader

KIND = "power"
MODEL_NOTE = (
    "model: P = P_idle + (P_busy - P_idle) x CPU utilisation of the device's quota "
    "+ J/bit x link bits; the board the device stands for, not this host"
)
Emit = Callable[[str, dict[str, float]], None]
"""emit(device, fields): one point of kind 'power' for that device."""


@dataclass
class MeterTarget:
    """What the meter needs of one device: its counters, its power model and its CPU quota."""

    read: CounterReader
    model: PowerModel | None
    quota_cpus: float
    rapl: bool = False  # an uncapped device on a host with RAPL: report the real reading too


@dataclass
class _Device:
    target: MeterTarget
    integrator: Integrator
    window: list[Sample] = field(default_factory=list)
    usage_marks: dict[str, Usage] = field(default_factory=dict)


class PowerMeter:
    """Samples at `hz`, emits a point per device every `every_s`; `mark` names instants (the start
    and end of training) that `summary` reports energy between."""

    def __init__(
        self,
        targets: dict[str, MeterTarget],
        emit: Emit,
        *,
        hz: float = 10.0,
        every_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        rapl: Rapl | None = None,
    ) -> None:
        if hz < 10:
            raise ValueError(f"power meter: got hz {hz}; expected >= 10")
        self.emit, self.hz, self.every_s, self.clock = emit, hz, every_s, clock
        unmodelled = PowerModel(0.0, 0.0, source="no power model: utilisation only")
        self.devices = {
            name: _Device(t, Integrator(t.model or unmodelled, t.quota_cpus))
            for name, t in targets.items()
        }
        self.rapl = rapl if any(t.rapl for t in targets.values()) else None
        self._rapl_now: tuple[float, float] | None = None  # (t, cumulative joules)
        self._rapl_emitted: tuple[float, float] | None = None
        self._rapl_marks: dict[str, tuple[float, float]] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="power-meter", daemon=True)
        self._started = self._last_emit = 0.0
        self.errors = 0

    # -- sampling ----------------------------------------------------------------------------
    def sample(self) -> None:
        """Read every device once and integrate (the thread calls this at `hz`)."""
        now = self.clock()
        with self._lock:
            for dev in self.devices.values():
                counters = dev.target.read()
                if counters is None:
                    self.errors += 1
                    continue
                s = dev.integrator.feed(Usage(now, *counters))
                if s is not None:
                    dev.window.append(s)
            if self.rapl is not None:
                joules = self.rapl.read_j()
                if joules is not None:
                    self._rapl_now = (now, joules)

    def flush(self) -> None:
        """Emit the mean power of each device's samples since the last point."""
        with self._lock:
            rapl_w = self._rapl_window()
            for name, dev in self.devices.items():
                if dev.window:
                    self.emit(name, self._fields(dev, rapl_w if dev.target.rapl else None))
                    dev.window = []
        self._last_emit = self.clock()

    def _fields(self, dev: _Device, rapl_w: float | None) -> dict[str, float]:
        span = sum(s.dt for s in dev.window)
        mean = lambda key: sum(getattr(s, key) * s.dt for s in dev.window) / span  # noqa: E731
        fields = {"utilisation": mean("utilisation"), "cpu_s": dev.window[-1].cpu_s,
                  "tx_bps": mean("tx_bps"), "rx_bps": mean("rx_bps"),
                  "samples": float(len(dev.window))}  # fmt: skip
        if dev.target.model is not None:
            fields.update(power_w=mean("power_w"), energy_j=dev.integrator.energy_j)
        if rapl_w is not None:
            fields["rapl_power_w"] = rapl_w
        return fields

    def _rapl_window(self) -> float | None:
        """The host's mean package power (RAPL) since the previous point, if it has RAPL."""
        previous, self._rapl_emitted = self._rapl_emitted, self._rapl_now
        return _watts(previous, self._rapl_now)

    def _run(self) -> None:
        period = 1.0 / self.hz
        next_t = self.clock()
        while not self._stop.is_set():
            self.sample()
            if self.clock() - self._last_emit >= self.every_s:
                self.flush()
            next_t += period
            self._stop.wait(max(0.0, next_t - self.clock()))

    # -- marks and results -------------------------------------------------------------------
    def mark(self, name: str) -> None:
        """Sample now and remember each device's energy and CPU time under `name`."""
        self.sample()
        with self._lock:
            for dev in self.devices.values():
                dev.integrator.mark(name)
                dev.usage_marks[name] = dev.integrator.last or Usage(0.0, 0.0)
            if self._rapl_now is not None:
                self._rapl_marks[name] = self._rapl_now

    def summary(self, start: str, end: str) -> dict[str, Any]:
        """Per device and in total: seconds, energy, mean power and utilisation between marks."""
        devices: dict[str, Any] = {}
        with self._lock:
            for name, dev in self.devices.items():
                devices[name] = self._device_summary(dev, start, end)
        modelled = [d for d in devices.values() if "energy_j" in d]
        seconds = max((d["seconds"] for d in devices.values()), default=0.0)
        out: dict[str, Any] = {"kind": MODEL_NOTE, "hz": self.hz, "devices": devices,
                               "read_errors": self.errors}  # fmt: skip
        if modelled:
            energy = sum(d["energy_j"] for d in modelled)
            out.update(energy_j=energy, power_w=energy / seconds if seconds else 0.0,
                       seconds=seconds, edp_js=edp(energy, seconds))  # fmt: skip
        return out

    def _device_summary(self, dev: _Device, start: str, end: str) -> dict[str, Any]:
        integ = dev.integrator
        if start not in integ.marks or end not in integ.marks:
            return {"seconds": 0.0, "samples": integ.samples}
        seconds, energy = integ.between(start, end)
        a, b = dev.usage_marks[start], dev.usage_marks[end]
        cpu = b.cpu_s - a.cpu_s
        out: dict[str, Any] = {
            "seconds": seconds,
            "cpu_s": cpu,
            "tx_bytes": b.tx_bytes - a.tx_bytes,
            "rx_bytes": b.rx_bytes - a.rx_bytes,
            "utilisation": cpu / (dev.target.quota_cpus * seconds) if seconds else 0.0,
            "samples": integ.samples,
            "quota_cpus": dev.target.quota_cpus,
        }
        if dev.target.model is not None:
            out.update(energy_j=energy, power_w=energy / seconds if seconds else 0.0,
                       model=dev.target.model.as_dict())  # fmt: skip
        rapl = _watts(self._rapl_marks.get(start), self._rapl_marks.get(end))
        if dev.target.rapl and rapl is not None:
            out["rapl_power_w"] = rapl  # the host's real package power, beside the model
        return out

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> PowerMeter:
        self._started = self._last_emit = self.clock()
        self.sample()
        self._thread.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()
        self.flush()


def _watts(a: tuple[float, float] | None, b: tuple[float, float] | None) -> float | None:
    if a is None or b is None or b[0] <= a[0]:
        return None
    return (b[1] - a[1]) / (b[0] - a[0])
