"""What a registered dataset is: its shape, class count and ordered list of sources."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from testbed.data.dataset import RawSplits


class SourceError(Exception):
    """One source could not provide the data; the message says why."""


# A source gets the data directory and returns the splits plus a human-readable origin.
FetchFn = Callable[[Path], tuple[RawSplits, str]]


@dataclass(frozen=True)
class Source:
    """One way of obtaining a dataset, tried in order after the cache."""

    label: str
    fetch: FetchFn


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset: key, class count, per-example shape and sources."""

    name: str
    num_classes: int
    input_shape: tuple[int, int, int]
    sources: tuple[Source, ...]
    synthetic: bool = False  # generated data: good for timing only, never reports accuracy
