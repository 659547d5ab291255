"""Sweeps: one spec file declares a grid over a base experiment; each cell runs as its own run.

Format (experiments/<name>.yaml)::

    name: bandwidth-sweep
    sweep:
      base: four-layer-sg-edge          # experiment name or spec path
      scale: smoke                      # default scale for every cell (--scale overrides)
      grid:                             # cells = cartesian product of the axes, in order
        mode:                           # an axis of labelled override sets ...
          sg: {job.mode: sg, algorithm.name: sg}
          bp-pipeline: {job.mode: bp-pipeline, algorithm.name: bp}
        cluster.links.*.rate: [1gbit, 10mbit]   # ... or a dotted path with a list of values
      overrides: {training.threads: 1}  # optional: applied to every cell
      target_accuracy: 0.85             # optional: one more level for every cell's time to
                                        # accuracy (besides report.accuracy_levels)

Dotted paths address the raw YAML before validation: mapping keys, list indices (`0`) or
`*` (every list element), so they work whatever schema a section has. Overrides are applied
after the base's scale, so they win over it. Each cell is validated before any cell runs.
"""

from __future__ import annotations

import copy
import itertools
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from testbed.spec.errors import SpecError, read_yaml
from testbed.spec.experiment import Spec
from testbed.spec.load import apply_scale, check_every_scale, parse_spec, resolve_path
from testbed.spec.overrides import set_path

_LABEL = re.compile(r"[^A-Za-z0-9.\-]+")


class SweepCfg(BaseModel):
    """The `sweep:` section."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    base: str
    scale: str | None = None
    grid: dict[str, list[Any] | dict[str, dict[str, Any]]] = Field(min_length=1)
    overrides: dict[str, Any] = {}
    target_accuracy: float | None = Field(
        None, gt=0, le=1, description="added to every cell's report.accuracy_levels")

    @field_validator("grid")
    @classmethod
    def _non_empty_axes(cls, grid: dict[str, Any]) -> dict[str, Any]:
        for axis, values in grid.items():
            if not values:
                raise ValueError(f"axis {axis!r} has no values; expected a non-empty list or mapping")
        return grid


class Sweep(BaseModel):
    """A sweep file: name, description, and the sweep section."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    description: str = ""
    sweep: SweepCfg


def axis_choices(axis: str, values: list[Any] | dict[str, dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(label, {path: value}) per value of one axis."""
    if isinstance(values, dict):
        return [(str(label), dict(over)) for label, over in values.items()]
    return [(_LABEL.sub("", str(v)) or "value", {axis: v}) for v in values]


def cells(sweep: SweepCfg) -> list[tuple[dict[str, str], dict[str, Any]]]:
    """({axis: label}, overrides) for every cell of the grid, first axis slowest."""
    axes = [(axis, axis_choices(axis, values)) for axis, values in sweep.grid.items()]
    out = []
    for combo in itertools.product(*(choices for _, choices in axes)):
        labels = {axis: label for (axis, _), (label, _) in zip(axes, combo, strict=True)}
        over = {**sweep.overrides}
        for _, o in combo:
            over.update(o)
        out.append((labels, over))
    return out


def cell_spec(base_raw: dict[str, Any], source: str, name: str, over: dict[str, Any], scale: str | None) -> Spec:
    """The base spec at `scale`, with the cell's overrides applied, validated."""
    doc = apply_scale(copy.deepcopy(base_raw), scale, source)
    doc.pop("scale")
    for path, value in over.items():
        set_path(doc, path, value)
    doc["name"] = name
    where = f"{source} (sweep cell {name})"
    return parse_spec({**doc, "scales": {scale: {}}} if scale not in (None, "paper") else doc, where, scale)


def load_sweep(name_or_path: str) -> Sweep | None:
    """The sweep in that file, or None when the file is not a sweep."""
    path = resolve_path(name_or_path)
    raw = read_yaml(path)
    if not isinstance(raw, dict) or "sweep" not in raw:
        return None
    try:
        return Sweep.model_validate(raw)
    except ValidationError as err:
        lines = [f"{path}: {'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors()]
        raise SpecError("\n".join(lines)) from None


def base_document(sweep: Sweep) -> tuple[str, dict[str, Any]]:
    """The base experiment's file and raw YAML, checked as a whole (base and every scale)."""
    base_path = resolve_path(sweep.sweep.base)
    base_raw = read_yaml(base_path)
    if not isinstance(base_raw, dict) or "sweep" in base_raw or "suite" in base_raw:
        raise SpecError(f"sweep.base {sweep.sweep.base!r}: expected an experiment spec, not a suite or sweep")
    check_every_scale(base_raw, str(base_path))
    return str(base_path), base_raw


def expand(sweep: Sweep, scale: str | None = None,
           overrides: dict[str, Any] | None = None) -> list[tuple[dict[str, str], Spec]]:
    """Every cell as ({axis: label}, validated Spec); raises SpecError naming the bad cell.

    `overrides` (a command line's) are applied to every cell after the cell's own."""
    base_path, base_raw = base_document(sweep)
    scale = scale or sweep.sweep.scale
    out: list[tuple[dict[str, str], Spec]] = []
    for labels, over in cells(sweep.sweep):
        over = {**over, **(overrides or {})}
        name = "-".join([sweep.name, *labels.values()])
        if any(spec.name == name for _, spec in out):
            raise SpecError(f"sweep {sweep.name!r}: two cells are both named {name!r}; "
                            "expected distinct labels per axis value")
        out.append((labels, with_level(cell_spec(base_raw, base_path, name, over, scale),
                                       sweep.sweep.target_accuracy)))
    return out


def with_level(spec: Spec, level: float | None) -> Spec:
    """The spec with `level` among its report.accuracy_levels (unchanged for None)."""
    levels = spec.report.accuracy_levels
    if level is None or level in levels:
        return spec
    report = spec.report.model_copy(update={"accuracy_levels": sorted([*levels, level])})
    return spec.model_copy(update={"report": report})


def levels(cells: list[tuple[dict[str, str], Spec]]) -> list[float]:
    """Every accuracy level any cell records, ascending."""
    return sorted({lv for _, spec in cells for lv in spec.report.accuracy_levels})

