"""What every command shares: the exit-2 error, option types, spec loading, aligned tables."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn, Optional

import typer

if TYPE_CHECKING:
    from testbed.spec.document import Document

ScaleOpt = Annotated[Optional[str], typer.Option(
    "--scale", "-s", help="scale to run: smoke (the default where a spec defines it), paper (the "
    "spec as written: the paper's budget), or another the spec defines, e.g. bench")]
ResultsOpt = Annotated[Optional[Path], typer.Option(
    "--results", help="results root (default: results/ or $TESTBED_RESULTS)")]
OverridesArg = Annotated[Optional[list[str]], typer.Argument(
    help="overrides PATH=VALUE, validated like the spec: training.lr=1e-3 job.mode=sg "
    "cluster.links.*.rate=10mbit", show_default=False)]
NameArg = Annotated[str, typer.Argument(help="experiment, suite or sweep name from experiments/, or a spec file path")]


def fail(msg: str, code: int = 2) -> NoReturn:
    """Print msg in red on stderr and exit (2: the input is wrong, nothing was started)."""
    typer.secho(msg, fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def load(name: str, scale: str | None, overrides: Sequence[str] | None) -> Document:
    """The spec file validated as `run` would start it; exit 2 naming the problem otherwise."""
    from testbed.spec.document import load_document
    from testbed.spec.errors import SpecError
    from testbed.spec.overrides import parse_overrides

    try:
        return load_document(name, scale, parse_overrides(overrides or ()))
    except SpecError as err:
        fail(str(err))


def table(rows: Sequence[Sequence[object]], headers: Sequence[str]) -> str:
    """Rows as columns padded to their widest cell; the last column is never padded or cut."""
    cells = [[str(c) for c in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers) - 1)]
    lines = ["  ".join([*(c.ljust(w) for c, w in zip(r, widths, strict=False)), r[-1]]).rstrip()
             for r in cells]
    return "\n".join(lines)



def require_modules(extra: str, *modules: str) -> None:
    """Exit 2 naming the extra to install when one of `modules` cannot be imported."""
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        fail(f"this command needs {', '.join(missing)}: pip install 'testbed[{extra}]'")

def say_scale(doc: Document) -> None:
    """One line saying which scale runs, and how to get the paper's budget when it was defaulted."""
    iterations = sorted({s.training.iterations for s in doc.specs})
    budget = f"{'/'.join(map(str, iterations))} iterations"
    if not doc.scale_defaulted:
        typer.echo(f"{doc.name}: scale {doc.scale} ({budget})")
    elif doc.scale == "paper":
        typer.echo(f"{doc.name}: the spec as written ({budget}); it defines no smoke scale")
    else:
        typer.echo(f"{doc.name}: scale {doc.scale} ({budget}), the default; "
                   "--scale paper runs the spec as written (the paper's budget)")
