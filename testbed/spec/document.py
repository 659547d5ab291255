"""Any spec file — an experiment, a suite or a sweep — loaded the one way `run`, `validate` and
`--dry-run` all use: at a scale (smoke by default where defined), with overrides, every file it
names checked as a whole before anything starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from testbed.spec.errors import SpecError, read_yaml
from testbed.spec.experiment import Spec
from testbed.spec.load import default_scale, load_spec, resolve_path, scale_names
from testbed.spec.suite import Suite, load_suite
from testbed.spec.sweep import Sweep, base_document, expand, load_sweep

Kind = Literal["experiment", "suite", "sweep"]


@dataclass(frozen=True)
class Document:
    """A loaded spec file: what it is, the scale it runs at, and the validated specs it runs."""

    kind: Kind
    name: str
    path: Path
    scale: str
    scale_defaulted: bool  # no --scale was given: the default was chosen
    specs: list[Spec]  # the experiment; the suite's members; the sweep's cells, in run order
    scales: list[str]  # scales the file (a sweep: its base) defines, 'paper' first
    labels: list[dict[str, str]] = field(default_factory=list)  # a sweep's cell labels
    suite: Suite | None = None
    sweep: Sweep | None = None


def kind_of(raw: Any) -> Kind:
    if isinstance(raw, dict) and "sweep" in raw:
        return "sweep"
    if isinstance(raw, dict) and "suite" in raw:
        return "suite"
    return "experiment"


def load_document(name_or_path: str, scale: str | None = None,
                  overrides: dict[str, Any] | None = None) -> Document:
    """Load and validate everything a run of `name_or_path` would start; SpecError otherwise."""
    path = resolve_path(name_or_path)
    raw = read_yaml(path)
    kind = kind_of(raw)
    if kind == "sweep":
        return _sweep(path, scale, overrides)
    if kind == "suite":
        return _suite(path, scale, overrides)
    chosen = scale or default_scale(raw)
    spec = load_spec(str(path), chosen, overrides)
    return Document("experiment", spec.name, path, chosen, scale is None, [spec], scale_names(raw))


def _suite(path: Path, scale: str | None, overrides: dict[str, Any] | None) -> Document:
    suite = load_suite(str(path))
    if suite is None:  # pragma: no cover - kind_of said suite
        raise SpecError(f"{path}: expected a suite")
    specs, scales = [], ["paper"]
    for member in suite.suite:
        member_raw = read_yaml(resolve_path(member))
        specs.append(load_spec(member, scale or suite.scale or default_scale(member_raw), overrides))
        scales += [s for s in scale_names(member_raw) if s not in scales]
    return Document("suite", suite.name, path, specs[0].scale, scale is None and suite.scale is None,
                    specs, scales, suite=suite)


def _sweep(path: Path, scale: str | None, overrides: dict[str, Any] | None) -> Document:
    sweep = load_sweep(str(path))
    if sweep is None:  # pragma: no cover - kind_of said sweep
        raise SpecError(f"{path}: expected a sweep")
    _, base_raw = base_document(sweep)
    chosen = scale or sweep.sweep.scale or default_scale(base_raw)
    cells = expand(sweep, chosen, overrides)
    return Document("sweep", sweep.name, path, chosen, scale is None and sweep.sweep.scale is None,
                    [spec for _, spec in cells], scale_names(base_raw),
                    labels=[labels for labels, _ in cells], sweep=sweep)
