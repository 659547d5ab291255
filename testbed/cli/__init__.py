"""The `testbed` command line: run, check and list experiments; look at and clean up runs; data,
report, benchmarks, dashboard; hold an emulated cluster. Exit 2: a bad spec or argument, nothing started.

Every command module imports only typer at the top and the rest of the testbed inside its
commands, so `testbed --help` and spec checks answer without loading TensorFlow.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported

import typer  # noqa: E402

from testbed.cli import cluster, experiments, plan, runs, tools  # noqa: E402

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__.split("\n\n")[0],
                  pretty_exceptions_enable=False)


@app.callback()
def _sweep_dead_runs() -> None:
    """Every command first removes what runs whose controller died (e.g. by SIGKILL) left
    behind: their namespaces, qdiscs, cgroups and containers. Live runs are never touched."""
    from testbed.emulation import lease

    if not lease.dead():  # the common case costs a directory listing
        return
    from testbed.emulation.cleanup import describe, sweep

    for run_id, gone in sweep().items():
        typer.echo(f"cleaned up after run {run_id}, whose controller died: {describe(gone)}",
                   err=True)  # fmt: skip


experiments.register(app)
plan.register(app)
runs.register(app)
tools.register(app)
cluster.register(app)
plan.register(app)


def main() -> None:  # pragma: no cover - console entry
    app()
