"""`testbed plan`: what the planner would do with a spec, before anything runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from testbed.cli.common import NameArg, OverridesArg, ResultsOpt, ScaleOpt, fail, load


def plan(
    name: NameArg,
    overrides: OverridesArg = None,
    scale: ScaleOpt = None,
    stages: Annotated[Optional[int], typer.Option(help="stages (default: one per device)")] = None,
    order: Annotated[str, typer.Option(help="fixed: devices in the spec's order; free: any order")] = "fixed",
    profile: Annotated[Optional[Path], typer.Option(help="unit times (JSON) instead of profiling now")] = None,
    results: ResultsOpt = None,
) -> None:
    """Partition the spec's model over its cluster: stages, predicted times, bound, baselines.

    Writes results/plan/<spec>-<scale>.json and .png; see docs/partition.md."""
    from testbed.controller.partition_plan import load_or_profile, plan_partition, table, write
    from testbed.metrics.run_dir import default_results_root
    from testbed.planner.partition import PartitionError
    from testbed.planner.placement import candidate_devices

    if order not in ("fixed", "free"):
        fail(f"--order: got {order!r}; expected fixed or free")
    doc = load(name, scale, overrides)
    if doc.kind != "experiment":
        fail(f"{name}: a {doc.kind}; expected one experiment to plan")
    spec = doc.specs[0]
    try:
        candidate_devices(spec)  # no cluster: say so before profiling
        times, source = load_or_profile(spec, profile)
        result = plan_partition(spec, times, stages, order)  # type: ignore[arg-type]
    except (PartitionError, OSError, KeyError, ValueError) as err:
        fail(str(err))
    typer.echo(f"{spec.name} [{spec.scale}] {spec.job.mode}: unit times from {source}")
    for line in table(result):
        typer.echo(line)
    out = (results or default_results_root()) / "plan" / f"{spec.name}-{spec.scale}"
    for path in write(result, out, {"spec": spec.name, "scale": spec.scale, "profile": source}):
        typer.echo(f"wrote {path}")


def register(app: typer.Typer) -> None:
    app.command()(plan)
