"""Dotted-path overrides on raw spec YAML: `training.lr=1e-3` from a command line or a sweep.

Paths address the raw YAML before validation: mapping keys (missing mappings are created),
list indices (`0`, `-1`) or `*` (every element of a list), so they work whatever schema a
section has and the result is validated exactly like a spec file. Values are YAML scalars or
flow collections (`[a, b]`, `{rate: 10mbit}`), read with the safe loader; numbers in any
spelling Python reads (`1e-3`, which YAML 1.1 would leave a string) become numbers.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from testbed.spec.errors import SpecError


def parse_value(text: str) -> Any:
    """A command-line value as YAML (safe loader); number-like strings become int or float."""
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError as err:
        raise SpecError(f"override value {text!r} is not valid YAML: {err}") from None
    if isinstance(value, str):
        for convert in (int, float):
            try:
                return convert(value)
            except ValueError:
                pass
    return value


def parse_override(item: str) -> tuple[str, Any]:
    """`path.to.field=value` -> (path, parsed value); SpecError naming the expected form."""
    path, sep, text = item.partition("=")
    path = path.strip()
    if not sep or not path or any(not part for part in path.split(".")):
        raise SpecError(f"override {item!r}: expected PATH=VALUE with a dotted path, "
                        "e.g. training.lr=1e-3 or cluster.links.*.rate=10mbit")
    return path, parse_value(text)


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """Every `PATH=VALUE` of a command line, in order (a later one for the same path wins)."""
    return dict(parse_override(item) for item in items)


def format_overrides(overrides: Mapping[str, Any]) -> str:
    return ", ".join(f"{path}={value!r}" if isinstance(value, str) else f"{path}={value}"
                     for path, value in overrides.items())


def apply_overrides(doc: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of `doc` with every override set."""
    out = copy.deepcopy(doc)
    for path, value in overrides.items():
        set_path(out, path, value)
    return out


def set_path(doc: dict[str, Any], path: str, value: Any) -> None:
    """Set a dotted path in raw YAML in place; `*` sets every element of a list."""
    parts = path.split(".")
    targets: list[Any] = [doc]
    for depth, part in enumerate(parts[:-1]):
        targets = [child for t in targets for child in _step(t, part, parts[: depth + 1])]
    last = parts[-1]
    for t in targets:
        if isinstance(t, list):
            for i in _indices(t, last, path):
                t[i] = copy.deepcopy(value)
        elif isinstance(t, dict):
            t[last] = copy.deepcopy(value)
        else:
            raise SpecError(f"override {path!r}: {'.'.join(parts[:-1])} is {t!r}; expected a mapping or list")


def _step(node: Any, part: str, where: list[str]) -> list[Any]:
    if isinstance(node, dict):
        if node.get(part) is None:
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
