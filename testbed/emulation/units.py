"""Pure parsers for the resource and link values a spec spells like Docker and tc do."""

from __future__ import annotations

import re

_NUMBER = r"(?P<num>\d+(?:\.\d+)?|\.\d+)"

# tc spells link rates in bits per second with decimal prefixes ("100mbit").
_RATE_UNITS = {"bit": 1, "kbit": 10**3, "mbit": 10**6, "gbit": 10**9, "tbit": 10**12}
# Docker spells memory with binary prefixes ("512m" = 512 MiB).
_MEMORY_UNITS = {
    "": 1, "b": 1,
    "k": 2**10, "kb": 2**10, "kib": 2**10,
    "m": 2**20, "mb": 2**20, "mib": 2**20,
    "g": 2**30, "gb": 2**30, "gib": 2**30,
    "t": 2**40, "tb": 2**40, "tib": 2**40,
}  # fmt: skip
_TIME_UNITS = {"us": 1e-6, "usec": 1e-6, "ms": 1e-3, "msec": 1e-3, "s": 1.0, "sec": 1.0}


def _split(value: object, what: str, expected: str) -> tuple[float, str]:
    """Split '2.5mbit' into (2.5, 'mbit'); raise naming the value and the expected form."""
    if not isinstance(value, str):
        # ValueError, not TypeError: pydantic turns only ValueError into a validation error
        raise ValueError(f"{what} {value!r} is not a string; expected {expected}")  # noqa: TRY004
    match = re.fullmatch(_NUMBER + r"\s*(?P<unit>[A-Za-z%]*)", value.strip())
    if match is None:
        raise ValueError(f"{what} {value!r} is not understood; expected {expected}")
    return float(match["num"]), match["unit"].lower()


def parse_rate(value: str | int) -> int:
    """'100mbit' -> 100_000_000 bits/s. Integers are taken as bits/s."""
    expected = "a positive number with a tc unit bit/kbit/mbit/gbit/tbit, e.g. '100mbit'"
    if isinstance(value, int) and not isinstance(value, bool):
        number, unit = float(value), "bit"
    else:
        number, unit = _split(value, "rate", expected)
    if unit.endswith("bps"):
        raise ValueError(
            f"rate {value!r} is ambiguous (tc reads 'bps' as bytes per second); "
            f"expected bits per second, e.g. '{number:g}{unit[:-3]}bit'"
        )
    if unit not in _RATE_UNITS:
        raise ValueError(f"rate {value!r} has unknown unit {unit!r}; expected {expected}")
    bits = round(number * _RATE_UNITS[unit])
    if bits <= 0:
        raise ValueError(f"rate {value!r} is not positive; expected {expected}")
    return bits


def parse_memory(value: str | int) -> int:
    """'1g' -> 1073741824 bytes (binary prefixes, as Docker's --memory)."""
    expected = "a positive size with unit b/k/m/g/t (binary, as Docker), e.g. '512m' or '1g'"
    if isinstance(value, int) and not isinstance(value, bool):
        number, unit = float(value), ""
    else:
        number, unit = _split(value, "memory", expected)
    if unit not in _MEMORY_UNITS:
        raise ValueError(f"memory {value!r} has unknown unit {unit!r}; expected {expected}")
    size = int(number * _MEMORY_UNITS[unit])
    if size <= 0:
        raise ValueError(f"memory {value!r} is not positive; expected {expected}")
    return size


def parse_time(value: str) -> float:
    """'20ms' -> 0.02 seconds. A unit is required: a bare '20' is ambiguous."""
    expected = "a non-negative number with unit us/ms/s, e.g. '20ms'"
    number, unit = _split(value, "time", expected)
    if unit not in _TIME_UNITS:
        raise ValueError(
            f"time {value!r} has unknown or missing unit {unit!r}; expected {expected}"
        )
    return number * _TIME_UNITS[unit]


def parse_percent(value: str) -> float:
    """'0.5%' -> 0.5 (percent, 0..100)."""
    expected = "a percentage between 0% and 100%, e.g. '1%'"
    number, unit = _split(value, "percentage", expected)
    if unit != "%" or number > 100:
        raise ValueError(f"percentage {value!r} is not understood; expected {expected}")
    return number


def format_rate(bits_per_s: float) -> str:
    """100_000_000 -> '100mbit' (for messages and reports)."""
    for unit in ("tbit", "gbit", "mbit", "kbit"):
        scale = _RATE_UNITS[unit]
        if bits_per_s >= scale:
            return f"{bits_per_s / scale:g}{unit}"
    return f"{bits_per_s:g}bit"
