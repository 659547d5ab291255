"""A metric point and the interface every metric sink implements."""

from __future__ import annotations

import numbers
import re
import time
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


def _check_name(what: str, name: object) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"{what} {name!r} is not a valid name; expected a non-empty string of "
            "letters, digits, '_', '.', '-' starting with a letter or '_' (e.g. 'train', 'loss')"
        )


def _check_fields(fields: object) -> None:
    if not isinstance(fields, dict) or not fields:
        raise ValueError(f"fields {fields!r} must be a non-empty dict of name -> int or float")
    for key, value in fields.items():
        _check_name("field name", key)
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ValueError(
                f"field {key!r} has value {value!r} of type {type(value).__name__}; "
                "expected an int or float (numpy scalars are fine; bool is not)"
            )


def _check_tags(tags: object) -> None:
    if not isinstance(tags, dict):
        raise ValueError(f"tags {tags!r} must be a dict of name -> non-empty string")
    for key, value in tags.items():
        _check_name("tag name", key)
        if not isinstance(value, str) or not value or "\n" in value:
            raise ValueError(
                f"tag {key!r} has value {value!r}; expected a non-empty string without newlines"
            )


@dataclass(frozen=True)
class Point:
    """One measurement at one instant.

    kind: the measurement, e.g. "train", "eval", "worker", "link".
    fields: numeric values, e.g. {"loss": 0.31, "step": 120}; numpy scalars are accepted.
    tags: string labels, e.g. {"stage": "1", "device": "rpi4"}.
    time_ns: Unix time in nanoseconds.
    """

    kind: str
    fields: dict[str, float | int]
    tags: dict[str, str]
    time_ns: int

    def __post_init__(self) -> None:
        _check_name("kind", self.kind)
        _check_fields(self.fields)
        _check_tags(self.tags)
        if isinstance(self.time_ns, bool) or not isinstance(self.time_ns, int) or self.time_ns < 0:
            raise ValueError(
                f"time_ns {self.time_ns!r} must be a non-negative int (Unix time in nanoseconds)"
            )

    @classmethod
    def now(
        cls, kind: str, fields: dict[str, float | int], tags: dict[str, str] | None = None
    ) -> Point:
        """A point stamped with the current wall-clock time."""
        return cls(kind, fields, dict(tags or {}), time.time_ns())


def check_tags(tags: dict[str, str]) -> None:
    """Raise ValueError unless tags is a dict of valid names to non-empty strings."""
    _check_tags(tags)


@runtime_checkable
class Sink(Protocol):
    """Where points go. write() must return at once: no I/O on the caller's thread."""

    def write(self, point: Point) -> None:
        """Accept one point; never blocks on I/O."""
        ...

    def close(self) -> dict[str, int]:
        """Deliver or persist what was accepted; return counts of what happened to it."""
        ...
