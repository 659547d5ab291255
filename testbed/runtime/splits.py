"""Which units each stage holds in each split epoch, and stage weights <-> unit weights (pure).

A re-split keeps the model's units and moves the boundaries between stages: epoch 0 is the
spec's split, each re-split adds an epoch. A stage's weights are its units' weights in order,
so converting between a stage of one epoch and the units (or a stage of another epoch) is
slicing by how many weights each unit has.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


class SplitError(ValueError):
    """An epoch or split the table cannot take; the message names the value and expected form."""


@dataclass(frozen=True)
class SplitTable:
    """counts[u]: weights of unit u; ends[epoch]: the last unit of each stage in that epoch."""

    counts: tuple[int, ...]
    ends: Mapping[int, tuple[int, ...]]

    @classmethod
    def initial(cls, counts: Sequence[int], ends: Sequence[int]) -> SplitTable:
        table = cls(tuple(counts), {})
        return table.with_epoch(0, ends)

    @property
    def stages(self) -> int:
        return len(self.ends[0])

    @property
    def latest(self) -> int:
        return max(self.ends)

    def with_epoch(self, epoch: int, ends: Sequence[int]) -> SplitTable:
        """A table that also knows `epoch` (newer than every known one, same stage count)."""
        ends = tuple(int(e) for e in ends)
        n = len(self.counts)
        if self.ends and epoch <= self.latest:
            raise SplitError(f"split epoch: got {epoch}, expected > {self.latest}")
        if self.ends and len(ends) != self.stages:
            raise SplitError(f"stage_ends: got {len(ends)} stages, expected {self.stages}")
        if not ends or list(ends) != sorted(set(ends)) or ends[0] < 0 or ends[-1] != n - 1:
            raise SplitError(f"stage_ends: got {list(ends)}, expected increasing unit indices "
                             f"ending with the last unit {n - 1}")
        return SplitTable(self.counts, {**self.ends, epoch: ends})

    def units(self, epoch: int, stage: int) -> range:
        ends = self._ends(epoch)
        if not 0 <= stage < len(ends):
            raise SplitError(f"stage_id: got {stage}, expected 0..{len(ends) - 1}")
        return range(ends[stage - 1] + 1 if stage else 0, ends[stage] + 1)

    def _ends(self, epoch: int) -> tuple[int, ...]:
        if epoch not in self.ends:
            raise SplitError(f"split epoch: got {epoch}, expected one of {sorted(self.ends)}")
        return self.ends[epoch]

    def to_units(self, epoch: int, stage: int, weights: Sequence[T]) -> dict[int, list[T]]:
        """A stage's weights (in order) as each of its units' weights."""
        units = self.units(epoch, stage)
        expected = sum(self.counts[u] for u in units)
        if len(weights) != expected:
            raise SplitError(f"stage {stage} of split epoch {epoch}: got {len(weights)} weights, "
                             f"expected {expected}")
        out, start = {}, 0
        for u in units:
            out[u] = list(weights[start : start + self.counts[u]])
            start += self.counts[u]
        return out

    def from_units(self, epoch: int, stage: int, units: Mapping[int, Sequence[T]]) -> list[T]:
        """A stage's weights, in order, from its units' weights."""
        return [w for u in self.units(epoch, stage) for w in units[u]]


def named_units(table: SplitTable, stages: Sequence[Mapping[str, T]]) -> dict[int, list[tuple[str, T]]]:
    """Per unit, its weights as (name without the stage position, value), from epoch-0 stages
    whose weights are named '<position>/<name>' (runtime.replica.weight_names)."""
    out: dict[int, list[tuple[str, T]]] = {}
    for s, named in enumerate(stages):
        items = [(name.split("/", 1)[-1], value) for name, value in named.items()]
        out.update(table.to_units(0, s, items))
    return out


def stage_named(table: SplitTable, epoch: int, stage: int,
                units: Mapping[int, Sequence[tuple[str, T]]]) -> dict[str, T]:
    """A stage of `epoch` named as its worker names its weights: '<position>/<name>'."""
    return {f"{k:03d}/{name}": value
            for k, (name, value) in enumerate(table.from_units(epoch, stage, units))}


def table_of(model_units: Sequence[str] | None, counts: Sequence[int] | None,
             stage_units: Sequence[Sequence[str]], stage_counts: Sequence[int]) -> SplitTable:
    """The epoch-0 table of a replica: units are the model's layer units when its stages are
    made of them (and their weight counts agree), else each stage is one unit (KT sections)."""
    if model_units is not None and counts is not None:
        index = {name: i for i, name in enumerate(model_units)}
        ends = [index.get(units[-1], -1) for units in stage_units]
        table = SplitTable(tuple(counts), {})
        try:
            table = table.with_epoch(0, ends)
            if [sum(counts[u] for u in table.units(0, s)) for s in range(len(ends))] == list(
                stage_counts
            ):
                return table
        except SplitError:
            pass
    return SplitTable.initial(stage_counts, range(len(stage_counts)))
