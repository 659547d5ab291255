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
experiments.register(app)
plan.register(app)
runs.register(app)
tools.register(app)
cluster.register(app)
plan.register(app)


def main() -> None:  # pragma: no cover - console entry
    app()
