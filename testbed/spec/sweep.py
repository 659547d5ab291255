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

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from testbed.spec.experiment import Spec, SpecError, apply_scale, parse_spec, resolve_path

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


def set_path(doc: dict[str, Any], path: str, value: Any) -> None:
    """Set a dotted path in raw YAML in place; `*` sets every element of a list."""
    parts = path.split(".")
    targets: list[Any] = [doc]
    for depth, part in enumerate(parts[:-1]):
        targets = [child for t in targets for child in _step(t, part, parts[: depth + 1], create=True)]
    last = parts[-1]
    for t in targets:
        if isinstance(t, list):
            for i in _indices(t, last, path):
                t[i] = copy.deepcopy(value)
        elif isinstance(t, dict):
            t[last] = copy.deepcopy(value)
        else:
            raise SpecError(f"override {path!r}: {'.'.join(parts[:-1])} is {t!r}; expected a mapping or list")


def _step(node: Any, part: str, where: list[str], create: bool) -> list[Any]:
    if isinstance(node, dict):
        if node.get(part) is None and create:
            node[part] = {}
        return [node[part]]
    if isinstance(node, list):
        return [node[i] for i in _indices(node, part, ".".join(where))]
    raise SpecError(f"override path {'.'.join(where)!r}: got {node!r}; expected a mapping or list")


def _indices(node: list[Any], part: str, path: str) -> list[int]:
    if part == "*":
        if not node:
            raise SpecError(f"override {path!r}: '*' over an empty list; the base declares none")
        return list(range(len(node)))
    if not part.lstrip("-").isdigit() or not -len(node) <= int(part) < len(node):
        raise SpecError(f"override {path!r}: index {part!r} for a list of {len(node)}; expected 0..{len(node) - 1} or '*'")
    return [int(part)]


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
    raw = yaml.safe_load(path.read_text())
    if not isinstance(raw, dict) or "sweep" not in raw:
        return None
    try:
        return Sweep.model_validate(raw)
    except ValidationError as err:
        lines = [f"{path}: {'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors()]
        raise SpecError("\n".join(lines)) from None


def expand(sweep: Sweep, scale: str | None = None) -> list[tuple[dict[str, str], Spec]]:
    """Every cell as ({axis: label}, validated Spec); raises SpecError naming the bad cell."""
    base_path = resolve_path(sweep.sweep.base)
    base_raw = yaml.safe_load(base_path.read_text())
    if not isinstance(base_raw, dict) or "sweep" in base_raw or "suite" in base_raw:
        raise SpecError(f"sweep.base {sweep.sweep.base!r}: expected an experiment spec, not a suite or sweep")
    scale = scale or sweep.sweep.scale
    out: list[tuple[dict[str, str], Spec]] = []
    for labels, over in cells(sweep.sweep):
        name = "-".join([sweep.name, *labels.values()])
        if any(spec.name == name for _, spec in out):
            raise SpecError(f"sweep {sweep.name!r}: two cells are both named {name!r}; "
                            "expected distinct labels per axis value")
        out.append((labels, with_level(cell_spec(base_raw, str(base_path), name, over, scale),
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

