"""Loading a spec: a file by name or path (safe YAML), its scales merged, dotted-path overrides,
validated once into the schema (`spec.experiment`) with errors that name the field."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from testbed.paths import experiments_dir
from testbed.spec.errors import SpecError, read_yaml
from testbed.spec.experiment import Spec
from testbed.spec.overrides import apply_overrides, format_overrides

DEFAULT_SCALE = "smoke"  # what the CLI runs without --scale, where a spec defines it


def list_experiments() -> list[str]:
    return sorted(p.stem for p in experiments_dir().glob("*.yaml"))


def resolve_path(name_or_path: str) -> Path:
    """A spec file path as given, or a name from experiments/."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.is_file():
            raise SpecError(f"{p}: no such spec file")
        return p
    candidate = experiments_dir() / f"{name_or_path}.yaml"
    if not candidate.is_file():
        known = ", ".join(list_experiments())
        raise SpecError(f"unknown experiment {name_or_path!r}; known experiments: {known}")
    return candidate


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Recursively overlay `over` on `base` (mappings merge, everything else replaces)."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def apply_scale(raw: dict[str, Any], scale: str | None, source: str) -> dict[str, Any]:
    """Merge the named scale's overrides into the spec; 'paper' (or None) is the file as written."""
    scales = raw.pop("scales", None) or {}
    if not isinstance(scales, dict):
        raise SpecError(f"{source}: scales: got {scales!r}; expected a mapping of scale name -> overrides")
    if scale in (None, "paper"):
        return {**raw, "scale": "paper"}
    if scale not in scales:
        known = ", ".join(["paper", *sorted(scales)])
        raise SpecError(f"{source}: scale {scale!r} is not defined; known scales: {known}")
    if not isinstance(scales[scale], dict):
        raise SpecError(f"{source}: scales.{scale}: got {scales[scale]!r}; expected a mapping")
    return {**deep_merge(raw, scales[scale]), "scale": scale}


def _allowed_fields(loc: tuple[Any, ...]) -> list[str]:
    """Field names allowed at the parent of `loc` (for 'unknown field' messages)."""
    model: Any = Spec
    for part in loc[:-1]:
        field = getattr(model, "model_fields", {}).get(part)
        model = getattr(field, "annotation", None)
    return list(getattr(model, "model_fields", {}))


def _format_error(source: str, err: ValidationError, notes: list[str]) -> str:
    lines = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "missing":
            lines.append(f"{source}: {where}: missing; this field is required")
        elif e["type"] == "extra_forbidden":
            allowed = ", ".join(_allowed_fields(e["loc"]))
            lines.append(f"{source}: {where}: unknown field; expected one of: {allowed}")
        elif isinstance(e.get("input"), dict):
            lines.append(f"{source}: {where}: {msg}")
        else:
            lines.append(f"{source}: {where}: got {e.get('input')!r}; {msg}")
    return "\n".join(lines + notes)


def parse_spec(raw: Any, source: str = "<spec>", scale: str | None = None,
               overrides: dict[str, Any] | None = None) -> Spec:
    """Validate an already-loaded YAML document at `scale`, with dotted-path `overrides` on top."""
    if not isinstance(raw, dict):
        raise SpecError(f"{source}: got {type(raw).__name__}; expected a YAML mapping at the top level")
    merged = apply_scale(dict(raw), scale, source)
    notes = [f"(after applying scale {scale!r})"] if scale not in (None, "paper") else []
    if overrides:
        merged = apply_overrides(merged, overrides)
        notes.append(f"(after applying overrides {format_overrides(overrides)})")
    try:
        return Spec.model_validate(merged)
    except ValidationError as err:
        raise SpecError(_format_error(source, err, notes)) from None


def scale_names(raw: Any) -> list[str]:
    """'paper' and every scale the document defines, in file order."""
    scales = raw.get("scales") if isinstance(raw, dict) else None
    return ["paper", *(str(k) for k in scales)] if isinstance(scales, dict) else ["paper"]


def default_scale(raw: Any) -> str:
    """The scale a run without --scale uses: smoke where the spec defines it, else the file as written."""
    return DEFAULT_SCALE if DEFAULT_SCALE in scale_names(raw) else "paper"


def check_every_scale(raw: Any, source: str) -> None:
    """Validate the base and every scale the file defines, so no bad value hides behind a scale."""
    for name in scale_names(raw):
        parse_spec(raw, source, name)


def load_spec(name_or_path: str, scale: str | None = None,
              overrides: dict[str, Any] | None = None) -> Spec:
    """Load a spec by name or path (safe YAML), check the whole file, return it at `scale`."""
    path = resolve_path(name_or_path)
    raw = read_yaml(path)
    spec = parse_spec(raw, str(path), scale, overrides)
    check_every_scale(raw, str(path))
    return spec


def load_resolved(path: Path) -> Spec:
    """A run directory's spec.yaml: the spec as it ran (its scale already applied)."""
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: got {type(raw).__name__}; expected a YAML mapping")
    try:
        return Spec.model_validate(raw)
    except ValidationError as err:
        raise SpecError(_format_error(str(path), err, [])) from None


def spec_to_dict(spec: Spec) -> dict[str, Any]:
    return spec.model_dump(mode="json")
