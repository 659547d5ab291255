"""Commands around runs: data (fetch, list), report (the notebook), bench, dashboard."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer
from typer.core import TyperCommand

from testbed.cli.common import ResultsOpt, fail, table

data_app = typer.Typer(no_args_is_help=True, help="Datasets: fetch into the cache, list the known ones.")


@data_app.command("fetch")
def data_fetch(
    names: Annotated[list[str], typer.Argument(help="dataset names, e.g. mnist")],
    data_dir: Annotated[Optional[str], typer.Option(help="cache directory (default: $TESTBED_DATA)")] = None,
) -> None:
    """Load datasets into the cache and print where each came from (exit 2 when one cannot be had)."""
    from testbed.data.__main__ import fetch

    raise typer.Exit(fetch(names, data_dir))


@data_app.command("list")
def data_list() -> None:
    """The registered datasets: classes and input shape."""
    from testbed.data.registry import DATASETS

    typer.echo(table([(n, s.num_classes, "x".join(map(str, s.input_shape))) for n, s in DATASETS.items()],
                     ("dataset", "classes", "input")))


def report(
    results: ResultsOpt = None,
    build_only: Annotated[bool, typer.Option("--build", help="regenerate the .ipynb, do not run it")] = False,
) -> None:
    """Execute results/report.ipynb headless and write results/report.html (needs the notebook extra)."""
    from testbed.cli.common import require_modules

    require_modules("notebook", "nbclient", "nbconvert")
    from testbed.report.notebook import main as notebook

    raise typer.Exit(notebook([*(["--build"] if build_only else []), *(["--results", str(results)] if results else [])]))


def _benches() -> Any:
    import testbed.bench.catalog  # noqa: F401  (registers every benchmark)
    from testbed.bench import BENCHES

    return BENCHES


class BenchHelp(TyperCommand):
    """`testbed bench --help` lists the benchmarks (the catalog is imported only then)."""

    def format_help(self, ctx: Any, formatter: Any) -> None:  # click's, as typer vendors it
        super().format_help(ctx, formatter)
        benches = _benches()
        rows = [(k, _first_line(benches.get(k))) for k in benches.keys()]
        if formatter.getvalue():  # plain help: written into the formatter
            with formatter.section("Benchmarks"):
                formatter.write_dl(rows)
        else:  # rich help was printed already
            typer.echo("\nBenchmarks:\n" + table(rows, ("  name", "what it measures")))


def _first_line(fn: Any) -> str:
    """The first line of a benchmark's docstring, else of its module's."""
    import sys

    doc = fn.__doc__ or getattr(sys.modules.get(fn.__module__), "__doc__", None) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def bench(
    name: Annotated[Optional[str], typer.Argument(help="benchmark name (none: list them)")] = None,
    results: ResultsOpt = None,
) -> None:
    """Run a benchmark; it writes results/bench/<name>.json and a figure."""
    from testbed.registry import UnknownKeyError

    benches = _benches()
    if name is None:
        typer.echo(table([(k, _first_line(benches.get(k))) for k in benches.keys()],
                         ("benchmark", "what it measures")))
        return
    try:
        fn = benches.get(name)
    except UnknownKeyError as err:
        fail(str(err))
    typer.echo(f"wrote {fn(results)}")


def dashboard(
    host: Annotated[Optional[str], typer.Option(help="address to bind (default 127.0.0.1)")] = None,
    port: Annotated[Optional[int], typer.Option(help="port (default 8050; 0 picks a free one)")] = None,
    results: ResultsOpt = None,
) -> None:
    """Serve the dashboard: runs, live charts, compare; start/stop need $TESTBED_DASHBOARD_TOKEN."""
    from testbed.cli.common import require_modules

    require_modules("report", "flask")
    from testbed.dashboard.__main__ import main as serve

    argv = [*(["--host", host] if host else []), *(["--port", str(port)] if port is not None else []),
            *(["--results", str(results)] if results else [])]
    raise typer.Exit(serve(argv))


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
    app.command()(report)
    app.command(cls=BenchHelp)(bench)
    app.command()(dashboard)
