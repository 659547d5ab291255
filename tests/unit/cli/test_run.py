"""The CLI end to end: invalid specs exit 2 before anything starts; real smoke runs through `testbed run`
(four-layer-bp without --scale: a bare run must be the smoke scale, never the paper's 500K steps)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from testbed.paths import PROJECT_ROOT

ROOT = PROJECT_ROOT


def run_cli(*args, results: Path, timeout=600):
    env = {**os.environ, "TESTBED_RESULTS": str(results), "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run(
        [sys.executable, "-m", "testbed", *args], cwd=ROOT, env=env, capture_output=True,
        text=True, timeout=timeout,
    )


def test_invalid_spec_exits_2_and_starts_nothing(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text("name: bad\nmodel: {name: four-layer}\nalgorithm: {name: sg}\ntraining: {iterations: -5}\n")
    res = run_cli("run", str(spec), results=tmp_path / "results")
    assert res.returncode == 2
    assert f"{spec}: training.iterations: got -5; Input should be greater than 0" in res.stderr
    assert not (tmp_path / "results").exists()


def test_unknown_scale_exits_2(tmp_path):
    res = run_cli("run", "four-layer-bp", "--scale", "giant", results=tmp_path)
    assert res.returncode == 2
    assert "scale 'giant' is not defined; known scales: paper, bench, smoke" in res.stderr


def test_list_shows_every_seed_experiment(tmp_path):
    res = run_cli("list", results=tmp_path)
    assert res.returncode == 0, res.stderr
    for name in ("four-layer-bp", "four-layer-sg", "eight-layer-sg", "vgg16-bp", "quickstart"):
        assert name in res.stdout


def _only_run(results: Path, experiment: str) -> Path:
    runs = list((results / experiment).iterdir())
    assert len(runs) == 1
    return runs[0]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "threshold"), [("four-layer-bp", 0.97), ("four-layer-sg", 0.90)])
def test_smoke_experiment_end_to_end(tmp_path, name, threshold):
    scale = ("--scale", "smoke") if name.endswith("-sg") else ()  # bp: smoke is the default
    res = run_cli("run", name, *scale, "--no-progress", results=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    run = _only_run(tmp_path, name)
    for f in ("spec.yaml", "metrics.jsonl", "events.jsonl", "summary.json", "accuracy.png", "accuracy.svg"):
        assert (run / f).stat().st_size > 0, f
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert summary["final_test_accuracy"] >= threshold
    assert summary["iterations"] == 1000 and summary["scale"] == "smoke"
    assert "mnist" in summary["data_source"]
    assert summary["provenance"]["argv"][1:] == ["run", name, *scale, "--no-progress"]
    assert summary["provenance"]["argv"][0] == "testbed/__main__.py"  # relative to the project
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == [200, 400, 600, 800, 1000]
    assert evals[-1]["test_acc"] == summary["final_test_accuracy"]
    assert all({"step", "loss", "train_acc", "it_s", "wall_s"} <= r.keys() for r in records if r["kind"] == "train")
    if name.endswith("-sg"):
        assert len(summary["sg_cost"]) == 3
        assert all(c["sg_params"] > 0 and c["extra_compute_fraction"] > 0 for c in summary["sg_cost"])
