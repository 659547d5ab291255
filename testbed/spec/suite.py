"""Suites: a YAML file that names several experiments to run in order at one scale, then compare."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from testbed.spec.errors import SpecError, read_yaml
from testbed.spec.load import resolve_path


class Suite(BaseModel):
    """`suite: [experiment names]`, an optional default scale and a comparison title."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    description: str = ""
    suite: list[str] = Field(min_length=1)
    scale: str | None = None
    title: str = ""


def load_suite(name_or_path: str) -> Suite | None:
    """The suite in that file, or None when the file is an ordinary experiment spec."""
    path = resolve_path(name_or_path)
    raw = read_yaml(path)
    if not isinstance(raw, dict) or "suite" not in raw:
        return None
    try:
        suite = Suite.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise SpecError(f"{path}: {where}: {first['msg']}") from None
    for member in suite.suite:
        resolve_path(member)  # fail early on an unknown member name
    return suite
