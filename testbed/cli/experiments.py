"""Commands on specs: run (or --dry-run), validate, list, compare, schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from testbed.cli.common import (
    NameArg,
    OverridesArg,
    ResultsOpt,
    ScaleOpt,
    fail,
    load,
    require_modules,
    say_scale,
    table,
)

if TYPE_CHECKING:
    from testbed.spec.document import Document
    from testbed.spec.experiment import Spec


def run(
    name: Annotated[Optional[str], typer.Argument(
        help="experiment, suite or sweep name from experiments/, or a spec file path")] = None,
    overrides: OverridesArg = None,
    scale: ScaleOpt = None,
    results: ResultsOpt = None,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="print the resolved spec, the placement and missing prerequisites; start nothing")] = False,
    resume: Annotated[Optional[Path], typer.Option(
        "--resume", help="continue this interrupted, failed or crashed run directory to its budget",
        show_default=False)] = None,
) -> None:
    """Run an experiment, suite or sweep (smoke scale unless --scale); writes results/<experiment>/<run-id>/.

    Without --scale a spec runs at its smoke scale (minutes); --scale paper runs the paper's budget.
    --resume RUN_DIR continues a run from its latest checkpoint, in its own directory."""
    if resume is not None:
        if name or overrides or scale:
            fail("--resume RUN_DIR continues the run as its spec.yaml says: give no experiment, "
                 "overrides or --scale with it")
        _resume(resume, progress)
        return
    if name is None:
        fail("expected an experiment, suite or sweep name (or --resume RUN_DIR)")
    doc = load(name, scale, overrides)
    if dry_run:
        from testbed.cli.dryrun import show

        raise typer.Exit(show(doc))
    require_modules("runtime", "tensorflow", "grpc")
    require_modules("report", "matplotlib")
    say_scale(doc)
    if doc.kind == "sweep":
        _run_sweep(doc, results, progress, overrides)
        return
    paths = [_run_one(spec, results, progress) for spec in doc.specs]
    if doc.kind == "suite" and doc.suite is not None:
        title = doc.suite.title or doc.suite.name
        _compare_paths(paths, title, results, f"{doc.suite.name}-{doc.scale}")



def _resume(path: Path, progress: bool) -> None:
    from testbed.controller.experiment import run_experiment
    from testbed.controller.resume import AlreadyComplete, ResumeError, resume_plan
    from testbed.spec.errors import SpecError

    try:
        spec, plan = resume_plan(path)
    except AlreadyComplete as done:
        typer.echo(str(done))
        return
    except (ResumeError, SpecError) as err:
        fail(str(err))
    typer.echo(f"resuming {path} from step {plan['from_step']} of {spec.training.iterations}")
    _report(spec, run_experiment(spec, None, progress, resume=plan).path)


def _run_one(spec: Spec, results: Path | None, progress: bool) -> Path:
    from testbed.controller.experiment import run_experiment

    return _report(spec, run_experiment(spec, results, progress).path)


def _report(spec: Spec, path: Path) -> Path:
    """Print a finished run's headline numbers and where it is."""
    summary = json.loads((path / "summary.json").read_text())
    accuracy = (
        f"final test accuracy {summary['final_test_accuracy']:.4f} "
        f"(best {summary['best_test_accuracy']:.4f})"
        if summary.get("final_test_accuracy") is not None
        else summary.get("data", "no test accuracy")
    )
    typer.echo(
        f"{spec.name} [{spec.scale}]: {accuracy}, {summary['mean_it_s']:.1f} it/s, "
        f"{summary['iterations']} iterations in {summary['wall_time_s']:.0f} s"
    )
    typer.echo(f"  run directory: {path}")
    return path


def _run_sweep(doc: Document, results: Path | None, progress: bool, overrides: list[str] | None) -> None:
    from testbed.controller.sweep_run import run_sweep
    from testbed.spec.overrides import parse_overrides

    assert doc.sweep is not None
    typer.echo(f"{doc.name}: {len(doc.specs)} cells")
    out = run_sweep(doc.sweep, doc.scale, results, progress, parse_overrides(overrides or ()))
    typer.echo((out / "table.md").read_text())
    typer.echo(f"sweep results: {out}")


def _compare_paths(paths: list[Path], title: str, results: Path | None, stem: str) -> None:
    from testbed.metrics.run_dir import default_results_root, read_summary
    from testbed.report.figures import accuracy_figure

    out = (results or default_results_root()) / "compare" / stem
    files = accuracy_figure(paths, out, title)
    nan = float("nan")
    rows = [(f"{p.parent.name}/{p.name}", f"{s.get('final_test_accuracy') or nan:.4f}",
             f"{s.get('best_test_accuracy') or nan:.4f}", f"{s.get('mean_it_s', nan):.1f}")
            for p in paths for s in [read_summary(p)]]
    typer.echo(table(rows, ("run", "final acc", "best acc", "it/s")))
    typer.echo(f"comparison figure: {files[0]}")


def compare(
    runs: Annotated[list[str], typer.Argument(help="experiment names (latest run of each) or run directories")],
    title: Annotated[str, typer.Option(help="figure title")] = "",
    results: ResultsOpt = None,
) -> None:
    """Overlay test-accuracy curves of several runs (e.g. BP vs SG) in one figure."""
    from testbed.metrics.run_dir import latest_run

    paths = []
    for r in runs:
        p = Path(r)
        found = p if (p / "summary.json").is_file() else latest_run(r, results)
        if found is None:
            fail(f"no finished run for {r!r}: expected a run directory or an experiment with runs")
        paths.append(found)
    _compare_paths(paths, title or " vs ".join(runs), results, "-vs-".join(Path(r).name for r in runs))


def validate(name: NameArg, overrides: OverridesArg = None, scale: ScaleOpt = None) -> None:
    """Check a spec file as a whole, exactly as `run` would load it (exit 2 with the reason).

    The base and every scale it defines, a suite's members, a sweep's cells, with the overrides."""
    doc = load(name, scale, overrides)
    spec = doc.specs[0]
    if doc.kind == "experiment":
        what = f"experiment ({spec.model.name}, {spec.algorithm.name}, mode {spec.job.mode})"
    elif doc.kind == "suite":
        what = f"suite of {len(doc.specs)}: {', '.join(s.name for s in doc.specs)}"
    else:
        what = f"sweep of {len(doc.specs)} cells over {doc.sweep.sweep.base if doc.sweep else '?'}"
    typer.echo(f"{name}: valid {what}; scales checked: {', '.join(doc.scales)}; "
               f"a run uses scale {doc.scale}{' (the default)' if doc.scale_defaulted else ''}")


def list_cmd() -> None:
    """List the experiments, suites and sweeps in experiments/."""
    from testbed.spec.document import load_document
    from testbed.spec.errors import SpecError
    from testbed.spec.load import list_experiments

    rows = []
    for name in list_experiments():
        try:
            doc = load_document(name)
        except SpecError as err:
            rows.append((name, "INVALID", "", "", "", str(err).splitlines()[0]))
            continue
        spec = doc.specs[0]
        if doc.kind == "experiment":
            rows.append((name, "experiment", spec.model.name, spec.algorithm.name, spec.job.mode,
                         spec.description))
        elif doc.kind == "suite" and doc.suite is not None:
            rows.append((name, "suite", "", "", "", " + ".join(doc.suite.suite)))
        elif doc.sweep is not None:
            grid = " x ".join(doc.sweep.sweep.grid)
            rows.append((name, f"sweep ({len(doc.specs)})", spec.model.name, "", "",
                         f"{doc.sweep.sweep.base}: {grid}"))
    typer.echo(table(rows, ("name", "kind", "model", "algo", "mode", "description")))


def schema(
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="write to this file instead of stdout")] = None,
) -> None:
    """Print the JSON Schema of spec files (experiments, suites, sweeps) for editors to complete."""
    from testbed.spec.schema import schema_json

    text = schema_json()
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text)
        typer.echo(f"wrote {out}")


def register(app: typer.Typer) -> None:
    app.command()(run)
    app.command()(validate)
    app.command("list")(list_cmd)
    app.command()(compare)
    app.command()(schema)
