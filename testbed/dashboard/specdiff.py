"""What differs between runs' specs: the dotted paths whose values are not the same in every run."""

from __future__ import annotations

from typing import Any

MISSING = None  # a path one spec has and another lacks shows as null there


def flatten(doc: Any, prefix: str = "") -> dict[str, Any]:
    """{dotted path: leaf value}; lists are leaves (a split, a device list compare whole)."""
    if not isinstance(doc, dict):
        return {prefix: doc} if prefix else {}
    out: dict[str, Any] = {}
    for key, value in doc.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            out.update(flatten(value, path))
        else:
            out[path] = value
    return out


def spec_diff(specs: list[dict[str, Any] | None], skip: tuple[str, ...] = ("name", "description")) -> list[dict[str, Any]]:
    """[{path, values}] for every path whose value differs between the specs, in first-seen order."""
    flat = [flatten(s or {}) for s in specs]
    paths = list(dict.fromkeys(p for f in flat for p in f))
    rows = []
    for path in paths:
        if path in skip:
            continue
        values = [f.get(path, MISSING) for f in flat]
        if any(v != values[0] for v in values[1:]):
            rows.append({"path": path, "values": values})
    return rows
