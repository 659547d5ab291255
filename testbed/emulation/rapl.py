"""The host's real CPU package energy from Intel RAPL (powercap), where the kernel exposes it.

Absent on many hosts (VMs, AMD without the driver, this CI machine kind): `Rapl.find()` is then
None and nothing reports a real reading. Counters wrap at max_energy_range_uj; reads handle it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

POWERCAP = Path("/sys/class/powercap")


@dataclass
class Rapl:
    """Package domains (intel-rapl:N) summed, in joules since the first read."""

    domains: list[Path]
    _last: dict[Path, int] = field(default_factory=dict)
    _total_uj: int = 0

    @classmethod
    def find(cls, root: Path = POWERCAP) -> Rapl | None:
        """The package domains under `root`, or None where there are none (or none readable)."""
        if not root.is_dir():
            return None
        domains = sorted(p for p in root.glob("intel-rapl:*") if p.name.count(":") == 1)
        readable = [d for d in domains if _read(d / "energy_uj") is not None]
        return cls(readable) if readable else None

    def read_j(self) -> float | None:
        """Joules used by all packages since the first call (wrap-around handled)."""
        for domain in self.domains:
            now = _read(domain / "energy_uj")
            if now is None:
                return None
            before = self._last.get(domain, now)
            if now < before:  # the counter wrapped
                now_span = (_read(domain / "max_energy_range_uj") or 0) - before + now
                self._total_uj += now_span
            else:
                self._total_uj += now - before
            self._last[domain] = now
        return self._total_uj / 1e6


def _read(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None
