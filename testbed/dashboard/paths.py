"""Safe names and paths: every name taken from a URL is checked before it touches the disk."""

from __future__ import annotations

import re
from pathlib import Path

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


class BadName(ValueError):
    """A name that is not a plain file name (has '/', '..', control characters, ...)."""


class OutsideRoot(LookupError):
    """A path that resolves (through '..' or a symlink) outside the directory it must stay in."""


def check_name(what: str, value: str) -> str:
    """`value` if it is a plain name (letters, digits, '_', '.', '-'; no '/', no '..')."""
    if not _NAME.fullmatch(value) or ".." in value:
        raise BadName(
            f"{what} {value!r} is not a valid name; expected 1-128 letters, digits, '_', '.', '-' "
            "starting with a letter or digit (no '/', no '..')"
        )
    return value


def contained(root: Path, *names: str) -> Path:
    """root/names..., resolved; refused unless it stays strictly inside the resolved root."""
    for name in names:
        check_name("name", name)
    base = root.resolve()
    candidate = base.joinpath(*names).resolve()
    if candidate == base or not candidate.is_relative_to(base):
        raise OutsideRoot(f"{'/'.join(names)!r} resolves outside {base}")
    return candidate


def is_inside(root: Path, path: Path) -> bool:
    """Whether `path` resolves strictly inside the resolved `root` (symlinks followed)."""
    base, resolved = root.resolve(), path.resolve()
    return resolved != base and resolved.is_relative_to(base)
