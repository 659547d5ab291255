"""CLI traps around the other commands: a fast --help that loads no TensorFlow, `runs`, `clean`,
`data`, `report`, and `bench --help` listing the benchmarks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from testbed.cli import app
from testbed.metrics.run_dir import EVENTS_FILE, SPEC_FILE, SUMMARY_FILE

runner = CliRunner()
HEAVY = ("tensorflow", "keras", "matplotlib", "flask", "docker", "grpc", "nbclient", "pyroute2")


def cli(*args: str) -> Any:
    return runner.invoke(app, list(args))


def _loaded_after(*args: str) -> list[str]:
    """Heavy modules a fresh interpreter has imported after the CLI ran `args`."""
    code = ("import sys\nfrom typer.testing import CliRunner\nfrom testbed.cli import app\n"
            f"r = CliRunner().invoke(app, {list(args)!r})\nassert r.exit_code == 0, r.output\n"
            f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().replace("'", '"'))


@pytest.mark.parametrize("args", [("--help",), ("run", "--help"), ("list",), ("validate", "quickstart"),
                                  ("run", "four-layer-sg-edge", "--dry-run"), ("schema",)])
def test_help_and_spec_commands_import_no_tensorflow(args: tuple[str, ...]) -> None:
    """`testbed --help` took ~9 s because the spec module imported TensorFlow through the registries."""
    assert _loaded_after(*args) == []


def test_every_command_is_listed() -> None:
    res = cli("--help")
    for command in ("run", "validate", "list", "compare", "schema", "runs", "clean", "data",
                    "report", "bench", "dashboard"):
        assert f" {command} " in res.output, command


def _fake_run(root: Path, experiment: str, run_id: str, summary: dict[str, Any] | None,
              pid: int | None = None) -> Path:
    path = root / experiment / run_id
    path.mkdir(parents=True)
    (path / SPEC_FILE).write_text(f"name: {experiment}\njob: {{mode: sg}}\nscale: smoke\n")
    start = {"event": "start", "pid": pid or 2**22 + 7, "host": os.uname().nodename}
    (path / EVENTS_FILE).write_text(json.dumps(start) + "\n")
    if summary is not None:
        (path / SUMMARY_FILE).write_text(json.dumps(summary))
    return path


def test_runs_lists_newest_first_and_filters(tmp_path: Path) -> None:
    done = {"status": "completed", "scale": "smoke", "mode": "sg", "final_test_accuracy": 0.91234,
            "mean_it_s": 12.34, "wall_time_s": 61.0}
    _fake_run(tmp_path, "four-layer-sg", "20261101-101500-smoke-1111", done)
    _fake_run(tmp_path, "four-layer-bp", "20261102-111600-smoke-2222", {**done, "mode": "inprocess",
                                                                        "final_test_accuracy": 0.97})
    _fake_run(tmp_path, "four-layer-sg", "20261103-121700-smoke-3333", None)  # crashed: pid gone
    res = cli("runs", "--results", str(tmp_path))
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0].split() == ["started", "experiment", "run", "status", "scale", "mode", "test",
                                "acc", "it/s", "wall", "s"]
    assert [line.split()[3] for line in lines[1:]] == [
        "20261103-121700-smoke-3333", "20261102-111600-smoke-2222", "20261101-101500-smoke-1111"]
    assert lines[1].split()[:5] == ["2026-11-03", "12:17", "four-layer-sg", "20261103-121700-smoke-3333", "interrupted"]
    assert lines[3].split()[5:] == ["smoke", "sg", "0.9123", "12.3", "61"]
    only = cli("runs", "four-layer-sg", "--status", "completed", "--results", str(tmp_path)).output
    assert len(only.splitlines()) == 2 and "20261101-101500-smoke-1111" in only
    assert cli("runs", "--status", "done", "--results", str(tmp_path)).exit_code == 2


def test_clean_sweeps_dead_runs_only_by_default_and_checks_the_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TESTBED_LEASE_DIR", str(tmp_path / "leases"))
    res = cli("clean")
    assert res.exit_code == 0 and "runs whose controller died: none left anything" in res.output
    assert cli("clean", "some-run", "--all").exit_code == 2
    res = cli("clean", "../etc")
    assert res.exit_code == 2 and "run id '../etc' is not usable" in res.output


def test_clean_refuses_a_live_run_without_force(tmp_path: Path) -> None:
    _fake_run(tmp_path, "four-layer-sg", "20261103-121700-smoke-4444", None, pid=os.getpid())
    res = cli("clean", "20261103-121700-smoke-4444", "--results", str(tmp_path))
    assert res.exit_code == 2 and f"is still running (pid {os.getpid()})" in res.output


def test_clean_list_reports_nothing_for_an_unknown_run() -> None:
    res = cli("clean", "--list", "no-such-run-0")
    assert res.exit_code == 0 and "no-such-run-0: nothing left" in res.output


def test_data_list_and_an_unknown_dataset() -> None:
    res = cli("data", "list")
    assert res.exit_code == 0 and "mnist" in res.output and "28x28x1" in res.output
    res = cli("data", "fetch", "no-such-set")
    assert res.exit_code == 2 and "no-such-set" in res.output


def test_bench_help_and_bare_bench_list_the_benchmarks() -> None:
    from testbed.bench import BENCHES

    for args in (("bench", "--help"), ("bench",)):
        res = cli(*args)
        assert res.exit_code == 0, res.output
        for name in BENCHES.keys():
            assert name in res.output, (args, name)
    assert cli("bench", "nope").exit_code == 2


def test_cluster_commands_refuse_clearly_without_a_cluster(tmp_path: Path) -> None:
    results = ("--results", str(tmp_path))
    res = cli("cluster", "up", "four-layer-sg", *results)
    assert res.exit_code == 2 and "expected an experiment spec with a cluster: section" in res.output
    res = cli("cluster", "exec", *results, "a", "--", "true")
    assert res.exit_code == 2 and "no cluster is up" in res.output
    res = cli("cluster", "shape", *results, "a", "speed=1")
    assert res.exit_code == 2 and "settings among rate=, delay=, jitter=, loss=" in res.output
    assert "no cluster is up" in cli("cluster", "status", *results).output
