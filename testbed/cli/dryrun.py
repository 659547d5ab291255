"""`testbed run --dry-run`: the resolved spec, where each worker runs, and what is missing."""

from __future__ import annotations

import typer
import yaml

from testbed.cli.common import say_scale, table
from testbed.spec.document import Document
from testbed.spec.experiment import Spec
from testbed.spec.load import spec_to_dict


def show(doc: Document) -> int:
    """Print everything a run of `doc` would start; 0 if it could start, 1 if something blocks it."""
    say_scale(doc)
    if doc.kind == "sweep":
        typer.echo(table([(s.name, ", ".join(f"{k}={v}" for k, v in labels.items()))
                          for s, labels in zip(doc.specs, doc.labels, strict=True)], ("cell", "values")))
    blocked = [_one(spec) for spec in doc.specs[: 1 if doc.kind == "sweep" else None]]
    if doc.kind == "sweep":
        typer.echo(f"(the other {len(doc.specs) - 1} cells differ only in the values above)")
    code = 1 if any(blocked) else 0
    typer.echo("dry run: nothing started; " + ("a run would stop at the missing prerequisites above"
                                               if code else "a run would start"))
    return code


def _one(spec: Spec) -> bool:
    """Print one spec's resolved form, placement and checks; True when a check blocks it."""
    from testbed.controller.preflight import checks, placement, plan_error

    typer.echo(f"\n# {spec.name} [{spec.scale}]: resolved spec")
    typer.echo(yaml.safe_dump(spec_to_dict(spec), sort_keys=False).rstrip())
    typer.echo(f"\n# {spec.name}: placement (job.mode {spec.job.mode})")
    error = plan_error(spec)
    if error:
        typer.secho(f"cannot place the workers: {error}", fg=typer.colors.RED)
    else:
        typer.echo(table(placement(spec), ("worker", "role", "stages", "runs on")))
    typer.echo(f"\n# {spec.name}: prerequisites")
    found = checks(spec)
    rows = [("ok" if c.ok else ("MISSING" if c.required else "degraded"), c.what, c.detail) for c in found]
    typer.echo(table(rows, ("", "what", "detail")))
    return bool(error) or any(c.blocks for c in found)
