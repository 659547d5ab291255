"""The `testbed` command line: run, list and compare experiments."""

from __future__ import annotations

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported

from pathlib import Path  # noqa: E402
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from testbed.spec.experiment import SpecError, list_experiments, load_spec

if TYPE_CHECKING:
    from testbed.spec.sweep import Sweep

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)

ScaleOpt = Annotated[Optional[str], typer.Option("--scale", "-s", help="scale: paper (default) or one the spec defines, e.g. smoke")]
ResultsOpt = Annotated[Optional[Path], typer.Option("--results", help="results root (default: results/ or $TESTBED_RESULTS)")]


def _fail(msg: str, code: int = 2) -> None:
    typer.secho(msg, fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _run_one(name: str, scale: str | None, results: Path | None, progress: bool) -> Path:
    from testbed.controller.experiment import run_experiment

    spec = load_spec(name, scale)
    run = run_experiment(spec, results, progress)
    summary = json.loads((run.path / "summary.json").read_text())
    typer.echo(
        f"{spec.name} [{spec.scale}]: final test accuracy {summary['final_test_accuracy']:.4f} "
        f"(best {summary['best_test_accuracy']:.4f}), {summary['mean_it_s']:.1f} it/s, "
        f"{summary['iterations']} iterations in {summary['wall_time_s']:.0f} s"
    )
    typer.echo(f"  run directory: {run.path}")
    return run.path


@app.command()
def run(
    name: Annotated[str, typer.Argument(help="experiment name from experiments/ or a spec file path")],
    scale: ScaleOpt = None,
    results: ResultsOpt = None,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
) -> None:
    """Run an experiment (or a suite of experiments) and write results/<experiment>/<run-id>/."""
    from testbed.spec.suite import load_suite
    from testbed.spec.sweep import load_sweep

    try:
        sweep = load_sweep(name)
        if sweep is not None:
            _run_sweep(sweep, scale, results, progress)
            return
        suite = load_suite(name)
        if suite is None:
            load_spec(name, scale)  # validate before anything starts
            _run_one(name, scale, results, progress)
            return
        members = [load_spec(m, scale or suite.scale) for m in suite.suite]
    except SpecError as err:
        _fail(str(err))
        return
    paths = [_run_one(m.name, m.scale, results, progress) for m in members]
    _compare_paths(paths, suite.title or suite.name, results, f"{suite.name}-{members[0].scale}")


def _run_sweep(sweep: Sweep, scale: str | None, results: Path | None, progress: bool) -> None:
    from testbed.controller.sweep_run import run_sweep
    from testbed.spec.sweep import expand

    typer.echo(f"{sweep.name}: {len(expand(sweep, scale))} cells")  # validates every cell first
    out = run_sweep(sweep, scale, results, progress)
    typer.echo((out / "table.md").read_text())
    typer.echo(f"sweep results: {out}")


def _compare_paths(paths: list[Path], title: str, results: Path | None, stem: str) -> None:
    from testbed.metrics.run_dir import default_results_root, read_summary
    from testbed.report.figures import accuracy_figure

    out = (results or default_results_root()) / "compare" / stem
    files = accuracy_figure(paths, out, title)
    typer.echo(f"{'run':40} {'final acc':>9} {'best acc':>9} {'it/s':>7}")
    for p in paths:
        s = read_summary(p)
        typer.echo(f"{p.parent.name + '/' + p.name:40.40} {s.get('final_test_accuracy', float('nan')):9.4f} "
                   f"{s.get('best_test_accuracy', float('nan')):9.4f} {s.get('mean_it_s', float('nan')):7.1f}")
    typer.echo(f"comparison figure: {files[0]}")


@app.command()
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
            _fail(f"no finished run for {r!r}: expected a run directory or an experiment with runs")
            return
        paths.append(found)
    _compare_paths(paths, title or " vs ".join(runs), results, "-vs-".join(Path(r).name for r in runs))


@app.command("list")
def list_cmd() -> None:
    """List the experiments, suites and sweeps in experiments/."""
    from testbed.spec.suite import load_suite
    from testbed.spec.sweep import load_sweep

    for name in list_experiments():
        try:
            sweep = load_sweep(name)
            if sweep is not None:
                grid = " x ".join(sweep.sweep.grid)
                typer.echo(f"{name:22} {'sweep':12} {'':4} {sweep.sweep.base}: {grid}")
                continue
            suite = load_suite(name)
            if suite is not None:
                typer.echo(f"{name:22} {'suite':12} {'':4} {' + '.join(suite.suite)}")
                continue
            spec = load_spec(name)
            typer.echo(f"{name:22} {spec.model.name:12} {spec.algorithm.name:4} {spec.description}")
        except SpecError as err:
            typer.echo(f"{name:22} INVALID: {str(err).splitlines()[0]}")


@app.command()
def validate(name: Annotated[str, typer.Argument(help="experiment name or spec path")], scale: ScaleOpt = None) -> None:
    """Check a spec without running it (exit 2 with the reason when invalid)."""
    try:
        spec = load_spec(name, scale)
    except SpecError as err:
        _fail(str(err))
        return
    typer.echo(f"{name}: valid ({spec.model.name}, {spec.algorithm.name}, scale {spec.scale})")


def main() -> None:  # pragma: no cover - console entry
    app()


@app.command()
def bench(
    name: Annotated[str, typer.Argument(help="benchmark name, e.g. accuracy")],
    results: ResultsOpt = None,
) -> None:
    """Run a benchmark; it writes results/bench/<name>.json and a figure."""
    import testbed.bench.catalog  # noqa: F401  (registers every benchmark)
    from testbed.bench import BENCHES
    from testbed.registry import UnknownKeyError

    try:
        fn = BENCHES.get(name)
    except UnknownKeyError as err:
        _fail(str(err))
        return
    typer.echo(f"wrote {fn(results)}")


@app.command()
def dashboard(
    host: Annotated[Optional[str], typer.Option(help="address to bind (default 127.0.0.1)")] = None,
    port: Annotated[Optional[int], typer.Option(help="port (default 8050; 0 picks a free one)")] = None,
    results: ResultsOpt = None,
) -> None:
    """Serve the dashboard: runs, live charts, compare; start/stop need $TESTBED_DASHBOARD_TOKEN."""
    from testbed.dashboard.__main__ import main as serve

    argv = [*(["--host", host] if host else []), *(["--port", str(port)] if port is not None else []),
            *(["--results", str(results)] if results else [])]
    raise typer.Exit(serve(argv))
