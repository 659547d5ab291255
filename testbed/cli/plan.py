"""`testbed plan`: what the planner would do with a spec, before anything runs.

Two planners share the command: a dp-async spec (or one with a `planner:` block, or `--prefer`)
ranks cluster configurations (which devices, server where) by time, power, energy or EDP
(docs/devices.md); any other spec partitions its model over the cluster (docs/partition.md).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from testbed.cli.common import NameArg, OverridesArg, ResultsOpt, ScaleOpt, fail, load, table

PreferOpt = Annotated[Optional[str], typer.Option(
    "--prefer", help="cluster planner: time | power | energy | edp (default: the spec's "
    "planner.prefer, else time)")]  # fmt: skip


def plan(
    name: NameArg,
    overrides: OverridesArg = None,
    scale: ScaleOpt = None,
    prefer: PreferOpt = None,
    stages: Annotated[Optional[int], typer.Option(help="partition: stages (default: one per device)")] = None,
    order: Annotated[str, typer.Option(help="partition: fixed (devices in the spec's order) or free")] = "fixed",
    profile: Annotated[Optional[Path], typer.Option(help="partition: unit times (JSON) instead of profiling now")] = None,
    results: ResultsOpt = None,
) -> None:
    """Plan a spec's cluster. dp-async (or a planner: block, or --prefer): profile each device,
    estimate time, power, energy and EDP of every configuration and print them ranked
    (results/<spec>/plan-*/plan.json and plan.png; docs/devices.md). Otherwise partition the
    model over the cluster: stages, predicted times, bound, baselines (results/plan/<spec>-<scale>
    .json and .png; docs/partition.md)."""
    if order not in ("fixed", "free"):
        fail(f"--order: got {order!r}; expected fixed or free")
    if prefer is not None:
        from testbed.spec.planner import check_preference

        try:
            check_preference(prefer)
        except ValueError as err:
            fail(f"--prefer: {err}")
    doc = load(name, scale, overrides)
    if doc.kind != "experiment":
        fail(f"{name}: a {doc.kind}; expected one experiment to plan")
    spec = doc.specs[0]
    if prefer is not None or spec.planner is not None or spec.job.mode == "dp-async":
        _plan_cluster(name, spec, prefer, results)
    else:
        _plan_partition(spec, stages, order, profile, results)


def _plan_partition(
    spec: Any, stages: int | None, order: str, profile: Path | None, results: Path | None
) -> None:
    from testbed.controller.partition_plan import load_or_profile, plan_partition, write
    from testbed.controller.partition_plan import table as partition_table
    from testbed.metrics.run_dir import default_results_root
    from testbed.planner.partition import PartitionError
    from testbed.planner.placement import candidate_devices

    try:
        candidate_devices(spec)  # no cluster: say so before profiling
        times, source = load_or_profile(spec, profile)
        result = plan_partition(spec, times, stages, order)  # type: ignore[arg-type]
    except (PartitionError, OSError, KeyError, ValueError) as err:
        fail(str(err))
    typer.echo(f"{spec.name} [{spec.scale}] {spec.job.mode}: unit times from {source}")
    for line in partition_table(result):
        typer.echo(line)
    out = (results or default_results_root()) / "plan" / f"{spec.name}-{spec.scale}"
    for path in write(result, out, {"spec": spec.name, "scale": spec.scale, "profile": source}):
        typer.echo(f"wrote {path}")


def _plan_cluster(name: str, spec: Any, prefer: str | None, results: Path | None) -> None:
    from testbed.spec.planner import PlannerCfg, check_planner

    try:
        planner = spec.planner or PlannerCfg()
        if prefer is not None:
            planner = PlannerCfg(**{**planner.model_dump(), "prefer": prefer})
        spec = spec.model_copy(update={"planner": planner, "job": spec.job.model_copy(
            update={"mode": "dp-async"})})  # fmt: skip
        check_planner(spec.planner, "dp-async", spec.cluster)
    except ValueError as err:
        fail(f"{name}: {err}".replace("\n", " "))
    from testbed.controller.planned import plan_cluster
    from testbed.metrics.run_dir import default_results_root
    from testbed.report.planner import plan_figure

    out = (results or default_results_root()) / spec.name / f"plan-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True)
    plan, profiling = plan_cluster(spec, out, typer.echo)
    rows = plan.rows()
    typer.echo(table([_cells(r) for r in rows],
                     ("rank", "configuration", "ps", "time s", "step s", "power W", "energy J",
                      "EDP J s", "steps per device")))  # fmt: skip
    files = plan_figure(rows, out / "plan", f"{spec.name}: configurations ranked for "
                        f"{plan.prefer}")  # fmt: skip
    typer.echo(f"profiling {profiling.seconds:.0f} s, estimation {plan.estimation_s * 1e3:.1f} ms;"
               f" pick: {plan.pick.config.label}" if plan.ranked else "no feasible configuration")
    typer.echo(f"plan: {out / 'plan.json'}  figure: {files[0]}")


def _cells(r: dict) -> tuple:
    if r.get("rank") is None:
        return ("-", r["config"], "", "", "", "", "", "", f"infeasible: {r['infeasible']}")
    steps = " ".join(f"{d}:{n}" for d, n in r["steps"].items())
    return (r["rank"], r["config"], r["ps"], f"{r['time_s']:.1f}", f"{r['step_s']:.3f}",
            f"{r['power_w']:.1f}", f"{r['energy_j']:.0f}", f"{r['edp_js']:.3g}", steps)


def register(app: typer.Typer) -> None:
    app.command()(plan)
