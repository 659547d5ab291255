"""Commands on what runs leave: `runs` lists run directories, `clean` removes a crashed run's leftovers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from testbed.cli.common import ResultsOpt, fail, table


def _num(value: Any, fmt: str) -> str:
    return format(value, fmt) if isinstance(value, (int, float)) else "-"


def runs(
    experiment: Annotated[Optional[str], typer.Argument(help="only this experiment's runs")] = None,
    status: Annotated[Optional[str], typer.Option(help="only runs with this status: running, completed, failed, interrupted")] = None,
    limit: Annotated[int, typer.Option(help="newest N runs (0: all)")] = 20,
    results: ResultsOpt = None,
) -> None:
    """List runs, newest first: when, experiment, run id, status, scale, mode, accuracy, speed."""
    from testbed.dashboard.runs import STATUSES
    from testbed.dashboard.store import RunStore
    from testbed.metrics.run_dir import default_results_root, run_started

    if status is not None and status not in STATUSES:
        fail(f"--status {status!r}: expected one of {', '.join(STATUSES)}")
    root = results or default_results_root()
    store = RunStore(root)
    refs = [r for r in store.refs() if experiment is None or r[0] == experiment]
    rows = []
    for exp, run_id, path in refs:
        info = store.info(exp, run_id, path)
        if status is not None and info["status"] != status:
            continue
        acc = info.get("final_test_accuracy", info.get("last_test_accuracy"))
        rows.append((run_started(run_id) or "-", exp, run_id, info["status"], info.get("scale") or "-",
                     info.get("mode") or "-", _num(acc, ".4f"), _num(info.get("mean_it_s"), ".1f"),
                     _num(info.get("wall_time_s"), ".0f")))
        if limit and len(rows) >= limit:
            break
    if not rows:
        typer.echo(f"no runs under {root}" + (f" for {experiment!r}" if experiment else ""))
        return
    typer.echo(table(rows, ("started", "experiment", "run", "status", "scale", "mode",
                            "test acc", "it/s", "wall s")))


def _live_run(run_id: str, root: Path) -> int | None:
    """The pid of a still-running run with this id under `root`, if any."""
    from testbed.dashboard.runs import infer_status, parse_events, run_process_alive
    from testbed.metrics.run_dir import EVENTS_FILE, SUMMARY_FILE

    for path in root.glob(f"*/{run_id}"):
        if (path / SUMMARY_FILE).is_file() or not (path / EVENTS_FILE).is_file():
            continue
        events = parse_events((path / EVENTS_FILE).read_bytes())
        start = next((e for e in events if e.get("event") == "start"), {})
        if infer_status(None, events, None, None, 0)[0] == "running" and run_process_alive(
                start.get("pid"), start.get("host")):
            return int(start["pid"])
    return None


def clean(
    run_ids: Annotated[Optional[list[str]], typer.Argument(help="run ids (as in `testbed runs`) whose leftovers to remove")] = None,
    all_runs: Annotated[bool, typer.Option("--all", help="every labelled leftover of every run, live ones too")] = False,
    list_only: Annotated[bool, typer.Option("--list", help="show what is left, remove nothing")] = False,
    force: Annotated[bool, typer.Option(help="also clean runs whose process still lives")] = False,
    results: ResultsOpt = None,
) -> None:
    """Remove what crashed runs left: namespaces, links, cgroups, containers, networks.

    Without run ids: the runs whose controller died (found by their lease; every command does
    this first). With run ids: those runs', whether or not they hold a lease.

    Only resources labelled with a run id are touched (and the processes inside them), never
    images or unlabelled containers."""
    from testbed.emulation import cleanup
    from testbed.emulation.naming import check_run_id
    from testbed.metrics.run_dir import default_results_root

    if run_ids and all_runs:
        fail("testbed clean: give run ids or --all, not both (--list shows what is left)")
    if not run_ids and not all_runs and not list_only:
        # runs whose controller died were swept before this command (cli._sweep_dead_runs)
        typer.echo(f"runs whose controller died: {_describe_swept(cleanup.sweep())}")
        return
    targets: list[str | None] = [None] if all_runs or not run_ids else list(run_ids)
    for run_id in targets:
        if run_id is not None:
            try:
                check_run_id(run_id)
            except ValueError as err:
                fail(str(err))
        label = run_id or "every run"
        if list_only:
            typer.echo(f"{label}: {_describe(cleanup.find(run_id)) or 'nothing left'}")
            continue
        pid = _live_run(run_id, results or default_results_root()) if run_id else None
        if pid is not None and not force:
            fail(f"run {run_id} is still running (pid {pid}); stop it first, or --force")
        typer.echo(f"{label}: removed {_describe(cleanup.clean(run_id)) or 'nothing (none left)'}")


def _describe_swept(swept: dict[str, Any]) -> str:
    if not swept:
        return "none left anything behind (live runs and runs without a lease are left alone)"
    return "; ".join(f"{run_id}: removed {_describe(gone)}" for run_id, gone in swept.items())


def _describe(found: Any) -> str:
    parts = [f"{len(v)} {k} ({', '.join(map(str, v))})" for k, v in vars(found).items() if v]
    return "; ".join(parts)


def register(app: typer.Typer) -> None:
    app.command()(runs)
    app.command()(clean)
