"""Fast parsing of metrics.jsonl: one JSON call per chunk, then columns per (kind, tags) in bulk."""

from __future__ import annotations

import json
from array import array
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import numpy as np

NUMBER_TYPES = frozenset({int, float})
RUN_TAGS = frozenset(
    {"run", "experiment", "mode"}
)  # the same on every line of a run: not a grouping
MALFORMED = object()  # a line that is not JSON (a blank line parses to None)
TagKey = tuple[tuple[str, str], ...]


@dataclass
class Batch:
    """Parsed rows of one kind and tag set: line numbers and a float column per numeric field."""

    kind: str
    tags: TagKey
    lines: list[int]
    cols: dict[str, array[float]]
    run_tags: dict[str, str]


def split_tags(tags: dict[str, str]) -> tuple[TagKey, dict[str, str]]:
    """(grouping tags such as device/link, sorted; run-level tags such as run/experiment/mode)."""
    group = tuple(sorted((k, v) for k, v in tags.items() if k not in RUN_TAGS))
    return group, {k: v for k, v in tags.items() if k in RUN_TAGS}


def parse_chunk(chunk: bytes) -> list[Any]:
    """One JSON value per line of `chunk` (which ends with a newline); None for blank lines and
    MALFORMED for lines that are not JSON."""
    n = chunk.count(b"\n")
    try:
        values = json.loads(b"[" + chunk[:-1].replace(b"\n", b",") + b"]")
        if isinstance(values, list) and len(values) == n:
            return values
    except ValueError:
        pass
    return [_loads_or_none(line) for line in chunk.split(b"\n")[:n]]


def _loads_or_none(line: bytes) -> Any:
    if not line.strip():
        return None
    try:
        return json.loads(line)
    except ValueError:
        return MALFORMED


def batches(values: list[Any], first_line: int) -> tuple[list[Batch], int]:
    """Column batches for the records among `values` (line i is first_line + i); and the bad count.

    Records with the same keys are converted together; a group whose value types are not uniform
    falls back to one record at a time.
    """
    by_keys: dict[tuple[str, ...], list[int]] = {}
    bad = 0
    for i, value in enumerate(values):
        if type(value) is dict:
            by_keys.setdefault(tuple(value), []).append(i)
        elif value is not None:
            bad += 1
    out: list[Batch] = []
    for keys, idx in by_keys.items():
        objs = [values[i] for i in idx]
        lines = [first_line + i for i in idx]
        fast = _uniform_batches(keys, objs, lines)
        if fast is None:
            fast, n_bad = _record_batches(objs, lines)
            bad += n_bad
        out.extend(fast)
    return out, bad


def _getter(keys: list[str]) -> Any:
    """itemgetter that always returns a tuple."""
    if not keys:
        return lambda obj: ()
    get = itemgetter(*keys)
    return get if len(keys) > 1 else (lambda obj: (get(obj),))


def _uniform_batches(
    keys: tuple[str, ...], objs: list[dict[str, Any]], lines: list[int]
) -> list[Batch] | None:
    """Batches for records sharing `keys`, typed like the first record; None if types differ."""
    first = objs[0]
    tag_keys = [k for k in keys if type(first[k]) is str]
    num_keys = [k for k in keys if type(first[k]) in NUMBER_TYPES]
    other_keys = [k for k in keys if k not in tag_keys and k not in num_keys]
    if "kind" not in tag_keys or any(
        set(map(type, map(itemgetter(k), objs))) & NUMBER_TYPES for k in other_keys
    ):
        return None
    try:  # one C-level conversion for all numeric fields; a string where a number was is refused
        matrix = np.array(
            list(map(_getter(num_keys), objs)) if num_keys else [()] * len(objs), dtype=np.float64
        )
    except (TypeError, ValueError):
        return None
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, tag_values in enumerate(map(_getter(tag_keys), objs)):
        groups.setdefault(tag_values, []).append(i)
    if not all(type(v) is str for tag_values in groups for v in tag_values):
        return None
    out = []
    for tag_values, rows in groups.items():
        tags = dict(zip(tag_keys, tag_values, strict=True))
        kind = tags.pop("kind")
        group, run_tags = split_tags(tags)
        sub = matrix if len(groups) == 1 else matrix[np.asarray(rows)]
        cols = {
            k: array("d", np.ascontiguousarray(sub[:, j]).tobytes()) for j, k in enumerate(num_keys)
        }
        out.append(
            Batch(
                kind, group, lines if len(groups) == 1 else [lines[i] for i in rows], cols, run_tags
            )
        )
    return out


def _record_batches(objs: list[dict[str, Any]], lines: list[int]) -> tuple[list[Batch], int]:
    """One batch per record (the slow path); records without a string 'kind' are counted bad."""
    out, bad = [], 0
    for obj, line in zip(objs, lines, strict=True):
        kind = obj.get("kind")
        if type(kind) is not str:
            bad += 1
            continue
        group, run_tags = split_tags(
            {k: v for k, v in obj.items() if type(v) is str and k != "kind"}
        )
        cols = {k: array("d", [float(v)]) for k, v in obj.items() if type(v) in NUMBER_TYPES}
        out.append(Batch(kind, group, [line], cols, run_tags))
    return out, bad
