"""job.on_failure: restart -- a killed worker costs a restart from the latest checkpoint, not the run;
and a distributed run resumed after Ctrl-C ends with the weights of the uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from testbed.controller.experiment import run_experiment
from testbed.metrics.run_dir import read_metrics, read_summary
from testbed.processes import pid_alive
from testbed.spec.load import parse_spec

pytestmark = pytest.mark.slow


def _raw(mode: str, iterations: int, **over: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "name": f"restart-{mode}",
        "model": {"name": "four-layer", "split_after": ["conv1"], "width": 0.5},
        "algorithm": {"name": mode if mode in ("sg", "local") else "bp", "sg": {"lr": 3.0e-3}},
        "training": {"batch_size": 32, "lr": 1.0e-3, "iterations": iterations,
                     "eval_every": iterations, "log_every": 5, "eval_samples": 500, "threads": 1,
                     "checkpoint_every": 20},
        "job": {"mode": mode, "on_failure": "restart"},
    }
    for key, value in over.items():
        raw[key] = {**raw.get(key, {}), **value}
    return raw


def _pids(run: Path) -> dict[str, int]:
    return {p.name.split(".")[0]: json.loads(p.read_text())["pid"]
            for p in (run / "workers").glob("*.ready.json")}


def _kill_once_past(results: Path, worker: str, step: int, killed: dict[str, Any]) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        for stream in results.glob(f"*/*/workers/{worker}.metrics.jsonl"):
            steps = [json.loads(line)["fields"].get("step", 0) for line in stream.read_text().splitlines()
                     if '"kind": "worker"' in line]
            if steps and max(steps) >= step:
                killed["pid"] = _pids(stream.parents[1])[worker]
                killed["t"] = time.time()
                os.kill(killed["pid"], signal.SIGKILL)
                return
        time.sleep(0.05)


@pytest.mark.parametrize("mode", ["sg", "local"])  # local: the heads come back from the checkpoint
def test_a_killed_stage_worker_is_restarted_and_the_run_completes(tmp_path: Path, mode: str) -> None:
    killed: dict[str, Any] = {}
    killer = threading.Thread(target=_kill_once_past, args=(tmp_path, "stage1", 50, killed),
                              daemon=True)  # fmt: skip
    killer.start()
    run = run_experiment(parse_spec(_raw(mode, 120)), tmp_path, progress=False)
    killer.join()
    summary = read_summary(run.path)
    assert killed and summary["status"] == "completed"
    (failure,) = summary["resilience"]["failures"]
    assert summary["resilience"]["restarts"] == 1 and "SIGKILL" in failure["reason"]
    assert failure["resumed_from"] in (40, 60) and failure["reached_step"] >= failure["resumed_from"]
    assert summary["resilience"]["steps_lost"] == failure["reached_step"] - failure["resumed_from"]
    assert [r["steps_lost"] for r in read_metrics(run.path, "failure")] == [failure["steps_lost"]]
    steps = [r["step"] for r in read_metrics(run.path, "train")]
    assert steps == list(range(5, 121, 5))  # the rewound steps are not counted twice
    assert summary["workers"]["stage0"]["step"] == 120 and summary["final_test_accuracy"] > 0.5
    assert not pid_alive(killed["pid"]) and all(not pid_alive(p) for p in _pids(run.path).values())
    events = [json.loads(line)["event"] for line in (run.path / "events.jsonl").read_text().splitlines()]
    assert events.count("workers_started") == 2 and "training_resumed" in events


def test_restarts_are_bounded(tmp_path: Path) -> None:
    killed: dict[str, Any] = {}
    killer = threading.Thread(target=_kill_once_past, args=(tmp_path, "stage1", 5, killed),
                              daemon=True)  # fmt: skip
    killer.start()
    with pytest.raises(Exception, match="SIGKILL"):
        run_experiment(parse_spec(_raw("sg", 100_000, job={"max_restarts": 0})), tmp_path,
                       progress=False)  # fmt: skip
    killer.join()
    summary = read_summary(next(tmp_path.glob("*/*/summary.json")).parent)
    assert summary["status"] == "failed" and "SIGKILL" in summary["reason"]


def test_a_distributed_run_resumed_after_ctrl_c_ends_with_the_uninterrupted_weights(
    tmp_path: Path,
) -> None:
    from testbed.data import load_dataset
    from testbed.data.batches import batch_indices
    from testbed.runtime.checkpoints import load_checkpoint
    from testbed.training.session import Session, fetch_batch

    steps, spec_path, results = 40, tmp_path / "bp.yaml", tmp_path / "results"
    raw = _raw("bp-sync", steps, job={"on_failure": "stop"}, training={"checkpoint_every": 10})
    spec_path.write_text(yaml.safe_dump(raw))
    argv = [sys.executable, "-m", "testbed", "run", str(spec_path), "--results", str(results),
            "--no-progress"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while not list(results.glob("*/*/workers/checkpoints/ckpt-000000020.npz")):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    run = next(results.glob("*/*/summary.json")).parent
    assert read_summary(run)["status"] == "interrupted"
    done = subprocess.run([sys.executable, "-m", "testbed", "run", "--resume", str(run),
                           "--no-progress"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    summary = read_summary(run)
    assert summary["status"] == "completed" and summary["resumptions"][0]["from_step"] >= 20
    assert [r["step"] for r in read_metrics(run, "train")] == list(range(5, steps + 1, 5))
    version, distributed = load_checkpoint(run / "workers" / "checkpoint")
    assert version == steps

    spec = parse_spec({**raw, "job": {"mode": "inprocess"}})
    data = load_dataset("mnist")
    session = Session.build(spec, data)
    step = session.compile_step()
    for idx in islice(batch_indices(len(data.y_train), 32, spec.training.seed), steps):
        step(*fetch_batch(data, idx))
    for stage, saved in zip(session.stages, distributed, strict=True):
        for want, got in zip(stage.model.get_weights(), saved, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
