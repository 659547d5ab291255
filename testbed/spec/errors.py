"""SpecError, and reading a spec file with the safe loader so that every YAML problem is one.

A syntax error or a tag the safe loader refuses (`!!python/object`, ...) becomes a SpecError
located as `FILE:LINE:COLUMN`, so the CLI exits 2 for it like for any other spec error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class SpecError(Exception):
    """A spec that cannot be used; the message names file, field, bad value and expected form."""


def read_yaml(path: Path) -> Any:
    """The document in `path` (safe loader); SpecError with file:line:column when it is not YAML."""
    try:
        text = path.read_text()
    except OSError as err:
        raise SpecError(f"{path}: cannot read: {err.strerror}") from None
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as err:
        raise SpecError(_located(path, err)) from None
    except yaml.YAMLError as err:
        raise SpecError(f"{path}: not valid YAML: {err}") from None


def _located(path: Path, err: yaml.MarkedYAMLError) -> str:
    mark = err.problem_mark or err.context_mark
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
    problem = err.problem or "not valid YAML"
    if isinstance(err, yaml.constructor.ConstructorError) and "tag" in problem:
        return (f"{where}: {problem.split(' for the ')[-1]} is not allowed; "
                "expected plain YAML (mappings, lists, strings, numbers, booleans)")
    context = f" ({err.context})" if err.context else ""
    return f"{where}: not valid YAML: {problem}{context}"
