"""`testbed run --resume`: a run stopped with Ctrl-C twice continues to its budget, no step lost."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from testbed.metrics.run_dir import read_metrics, read_summary

pytestmark = pytest.mark.slow

ITERATIONS, LOG_EVERY, EVAL_EVERY = 240, 5, 40


def _raw() -> dict[str, Any]:
    return {
        "name": "resume-inprocess",
        "model": {"name": "four-layer", "width": 0.5},
        "algorithm": {"name": "sg", "sg": {"lr": 3.0e-3}},
        "training": {"batch_size": 32, "lr": 1.0e-3, "iterations": ITERATIONS,
                     "eval_every": EVAL_EVERY, "log_every": LOG_EVERY, "eval_samples": 500,
                     "threads": 1, "checkpoint_every": 1000},  # only Ctrl-C writes one
    }


def _testbed(*args: str) -> list[str]:
    return [sys.executable, "-m", "testbed", "run", *args, "--no-progress"]


def _interrupt_after(argv: list[str], results: Path, step: int) -> Path:
    """Start argv, send SIGINT once the run has logged `step`, wait; returns the run dir."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the run never reached the step"
            logged = [r["step"] for p in results.glob("*/*") if (p / "metrics.jsonl").exists()
                      for r in read_metrics(p, "train")]
            if logged and max(logged) >= step:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0 and "stopping after this step" in err
    return next(results.glob("*/*/summary.json")).parent


def test_a_run_interrupted_twice_resumes_to_its_budget_without_gaps(tmp_path: Path) -> None:
    spec, results = tmp_path / "resume.yaml", tmp_path / "results"
    spec.write_text(yaml.safe_dump(_raw()))
    run = _interrupt_after(_testbed(str(spec), "--results", str(results)), results, 60)
    first = read_summary(run)
    assert first["status"] == "interrupted"
    run = _interrupt_after(_testbed("--resume", str(run)), results, 150)
    assert read_summary(run)["status"] == "interrupted"
    done = subprocess.run(_testbed("--resume", str(run)), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr

    summary = read_summary(run)
    assert summary["status"] == "completed" and summary["iterations"] == ITERATIONS
    resumed = [r["from_step"] for r in summary["resumptions"]]
    assert len(resumed) == 2 and 60 <= resumed[0] < resumed[1] and resumed[1] >= 150
    assert [r["previous_status"] for r in summary["resumptions"]] == ["interrupted"] * 2
    steps = [r["step"] for r in read_metrics(run, "train")]
    assert steps == list(range(LOG_EVERY, ITERATIONS + 1, LOG_EVERY))  # no gap, no duplicate
    evals = [r["step"] for r in read_metrics(run, "eval")]
    assert evals == list(range(EVAL_EVERY, ITERATIONS + 1, EVAL_EVERY))
    walls = [r["wall_s"] for r in read_metrics(run, "train")]
    assert walls == sorted(walls)  # the time axis continues across resumptions
    assert summary["final_test_accuracy"] > 0.8 and summary["wall_time_s"] > first["wall_time_s"]

    again = subprocess.run(_testbed("--resume", str(run)), capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "already completed" in again.stdout
    assert json.loads((run / "summary.json").read_text()) == summary  # nothing changed
