"""Real distributed runs: worker processes on loopback, real gRPC, real MNIST, cleanup by PID."""

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
from testbed.controller.workers import WorkerFailedError
from testbed.metrics.run_dir import read_metrics, read_summary
from testbed.processes import pid_alive
from testbed.spec.experiment import Spec
from testbed.spec.load import parse_spec

pytestmark = pytest.mark.slow


def _raw(mode: str, iterations: int, **over: Any) -> dict[str, Any]:
    algo = "sg" if mode in ("sg", "inprocess-sg") else "bp"
    raw: dict[str, Any] = {
        "name": f"dist-{mode}",
        "model": {"name": "four-layer", "split_after": ["conv1"], "width": 0.5},
        "algorithm": {"name": algo, "sg": {"lr": 3.0e-3}},
        "training": {
            "batch_size": 32,
            "lr": 1.0e-3,
            "iterations": iterations,
            "eval_every": iterations,
            "log_every": 5,
            "eval_samples": 500,
            "threads": 1,
        },
        "job": {"mode": mode},
    }
    for key, value in over.items():
        raw[key] = {**raw.get(key, {}), **value}
    return raw


def _spec(mode: str, iterations: int, **over: Any) -> Spec:
    return parse_spec(_raw(mode, iterations, **over))


_INT8_FP16 = {"activations": "int8", "gradients": "fp16", "scale": "per-channel"}


def _worker_pids(run_path: Path) -> dict[str, int]:
    pids = {}
    for ready in (run_path / "workers").glob("*.ready.json"):
        pids[ready.name.split(".")[0]] = json.loads(ready.read_text())["pid"]
    return pids


def _assert_no_worker_left(pids: dict[str, int]) -> None:
    assert pids, "no worker ever reported ready"
    assert {name: pid for name, pid in pids.items() if pid_alive(pid)} == {}


def test_sg_across_two_workers_reduces_the_loss_and_both_report(tmp_path: Path) -> None:
    run = run_experiment(_spec("sg", 60), tmp_path, progress=False)
    summary = read_summary(run.path)
    assert summary["status"] == "completed"
    losses = [r["loss"] for r in read_metrics(run.path, "train")]
    assert len(losses) == 12 and np.mean(losses[-2:]) < 0.7 * losses[0]
    workers = {r["worker"] for r in read_metrics(run.path, "worker")}
    assert {"stage0", "stage1"} <= workers
    stage0 = [r for r in read_metrics(run.path, "worker") if r["worker"] == "stage0"]
    assert stage0[-1]["staleness_n"] > 0 and "blocked_output_s" in stage0[-1]
    # every step function traced before training; no call traced again mid-run
    retraces = {n: w["gauges"]["retraces"] for n, w in summary["workers"].items() if n != "ps"}
    assert retraces == {"stage0": 0.0, "stage1": 0.0}
    links = {(r["worker"], r["peer"]) for r in read_metrics(run.path, "link")}
    assert {("stage0", "downstream"), ("stage1", "upstream")} <= links
    assert [r["step"] for r in read_metrics(run.path, "eval")] == [60]
    assert summary["final_test_accuracy"] > 0.5
    # timed at the workers' snapshot of step 60, from the start of training
    ((evaluation),) = summary["evaluations"]
    assert evaluation["step"] == 60 and 0 < evaluation["train_s"] <= summary["train_time_s"]
    assert summary["time_to_accuracy"][0]["level"] == 0.9
    assert 1.0 < summary["transfer"]["wire_over_raw"] <= 1.02
    _assert_no_worker_left(_worker_pids(run.path))


def test_sg_with_target_every_sends_ceil_steps_over_k_targets_compressed(tmp_path: Path) -> None:
    """Three SG workers, 10 steps, a target for one batch in 3, int8 / fp16 on the wire."""
    over = {"model": {"split_after": ["conv1", "fc1"]},
            "algorithm": {"name": "sg", "sg": {"lr": 3.0e-3, "target_every": 3}},
            "job": {"wire": _INT8_FP16}}
    run = run_experiment(_spec("sg", 10, **over), tmp_path, progress=False)
    summary = read_summary(run.path)
    assert summary["status"] == "completed"
    peers = {n: w["peers"] for n, w in summary["workers"].items() if n != "ps"}
    # stage1 and stage2 each send targets for batches 1, 4, 7, 10 upstream, nothing else
    assert [peers[f"stage{i}"]["sent:upstream"]["messages"] for i in (1, 2)] == [4, 4]
    assert "sent:upstream" not in peers["stage0"]
    assert [peers[f"stage{i}"]["sent:downstream"]["messages"] for i in (0, 1)] == [10, 10]
    # each stage learns every target owed to it before it ends (settles after its final batch)
    assert [peers[f"stage{i}"]["received:downstream"]["messages"] for i in (0, 1)] == [4, 4]
    # only the 4 batches that get a target wait for one (all 10 would leave 6 pending after
    # the settle's time-out); every step function traced up front
    gauges = {n: summary["workers"][n]["gauges"] for n in peers}
    assert all(gauges[n]["pending_targets"] <= 4 for n in ("stage0", "stage1"))
    assert all(gauges[n]["targets_expired"] == 0 for n in ("stage0", "stage1"))
    assert {n: g["retraces"] for n, g in gauges.items()} == dict.fromkeys(peers, 0.0)
    forward = peers["stage0"]["sent:downstream"]
    assert forward["message_bytes"] * 3.9 < forward["raw_bytes"]  # int8 activations
    backward = peers["stage1"]["sent:upstream"]
    assert backward["message_bytes"] * 1.95 < backward["raw_bytes"]  # fp16 targets
    _assert_no_worker_left(_worker_pids(run.path))


def _in_process_weights(spec: Spec) -> tuple[list[list[np.ndarray]], list[list[np.ndarray]]]:
    """(weights after spec's steps, initial weights) of the in-process reference run."""
    from testbed.data import load_dataset
    from testbed.data.batches import batch_indices
    from testbed.training.session import Session, fetch_batch

    data = load_dataset("mnist")
    session = Session.build(spec, data)
    step = session.compile_step()
    t = spec.training
    for idx in islice(batch_indices(len(data.y_train), t.batch_size, t.seed), t.iterations):
        step(*fetch_batch(data, idx))
    initial = Session.build(spec, data)
    return [s.model.get_weights() for s in session.stages], [
        s.model.get_weights() for s in initial.stages]


@pytest.mark.parametrize("wire", [{}, _INT8_FP16], ids=["fp32", "int8-fp16"])
def test_bp_sync_over_workers_gives_the_in_process_weights(
    tmp_path: Path, wire: dict[str, str]
) -> None:
    """The transport is exact up to the codec: workers exchanging compressed tensors end
    where in-process BP ends with the same round trip applied between its stages."""
    from testbed.runtime.checkpoints import load_checkpoint

    steps = 3
    over = {"training": {"optimizer": "sgd", "lr": 0.05}}
    job = {"wire": wire}
    run = run_experiment(_spec("bp-sync", steps, job=job, **over), tmp_path, progress=False)
    assert read_summary(run.path)["status"] == "completed"
    version, distributed = load_checkpoint(run.path / "workers" / "checkpoint")
    assert version == steps

    inprocess = _spec("inprocess", steps, algorithm={"name": "bp"}, job=job, **over)
    want_all, initial = _in_process_weights(inprocess)
    for want_stage, start_stage, saved in zip(want_all, initial, distributed, strict=True):
        for want, start, got in zip(want_stage, start_stage, saved, strict=True):
            assert not np.array_equal(want, start) or not want.any()  # training moved the weights
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    if wire:  # the same tolerance tells the codec's effect apart: without it, far off
        plain, _ = _in_process_weights(_spec("inprocess", steps, algorithm={"name": "bp"}, **over))
        assert not all(
            np.allclose(p, w, rtol=1e-4, atol=1e-6)
            for ps, ws in zip(plain, want_all, strict=True) for p, w in zip(ps, ws, strict=True)
        )


def test_killed_worker_fails_the_run_fast_and_leaves_no_process(tmp_path: Path) -> None:
    killed: dict[str, float] = {}

    def kill_when_training() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            for stream in tmp_path.glob("*/*/workers/stage1.metrics.jsonl"):
                if '"kind": "worker"' in stream.read_text():  # it has trained a few steps
                    os.kill(_worker_pids(stream.parents[1])["stage1"], signal.SIGKILL)
                    killed["t"] = time.time()
                    return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_when_training, daemon=True)
    killer.start()
    with pytest.raises(
        WorkerFailedError, match=r"worker 'stage1' \(pid \d+\) was killed by SIGKILL"
    ):
        run_experiment(_spec("sg", 100_000), tmp_path, progress=False)
    ended = time.time()
    killer.join()
    run_path = next(tmp_path.glob("*/*/summary.json")).parent
    summary = read_summary(run_path)
    assert summary["status"] == "failed" and "SIGKILL" in summary["reason"]
    events = [json.loads(line) for line in (run_path / "events.jsonl").read_text().splitlines()]
    noticed = next(e["t"] for e in events if e["event"] == "worker_failed")
    assert noticed - killed["t"] < 5.0
    assert ended - killed["t"] < 15.0
    assert list(read_metrics(run_path, "worker"))  # metrics written before the kill are kept
    _assert_no_worker_left(_worker_pids(run_path))


def test_ctrl_c_interrupts_the_run_and_leaves_no_process(tmp_path: Path) -> None:
    spec_path = tmp_path / "ctrl-c.yaml"
    spec_path.write_text(yaml.safe_dump(_raw("bp-sync", 100_000)))
    results = tmp_path / "results"
    argv = [
        sys.executable,
        "-m",
        "testbed",
        "run",
        str(spec_path),
        "--results",
        str(results),
        "--no-progress",
    ]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not any(
            "training_started" in e.read_text() for e in results.glob("*/*/events.jsonl")
        ):
            assert proc.poll() is None and time.monotonic() < deadline, "run never started training"
            time.sleep(0.05)
        run_path = next(results.glob("*/*/events.jsonl")).parent
        pids = _worker_pids(run_path)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    summary = read_summary(run_path)
    assert (summary["status"], summary["reason"]) == ("interrupted", "Ctrl-C")
    _assert_no_worker_left(pids)


@pytest.mark.parametrize(
    ("mode", "over"),
    [
        ("bp-pipeline", {"job": {"mode": "bp-pipeline", "micro_batches": 4}}),
        ("bp-local", {}),
        ("dp-async", {"job": {"mode": "dp-async", "replicas": 2}}),
        ("sg", {"job": {"mode": "sg", "store": {"capacity": 1, "on_full": "drop"}}}),
    ],
)
def test_every_mode_completes_with_accuracy_from_the_ps(
    tmp_path: Path, mode: str, over: dict
) -> None:
    run = run_experiment(_spec(mode, 20, **over), tmp_path, progress=False)
    summary = read_summary(run.path)
    assert summary["status"] == "completed"
    assert 0.1 < summary["final_test_accuracy"] <= 1.0 and summary["mean_it_s"] > 0
    if mode == "dp-async":
        assert sum(w["step"] for w in summary["workers"].values()) >= 20
    elif mode == "sg":  # dropping keeps the newest activations: stage 1 may step fewer times
        assert summary["workers"]["stage0"]["step"] == 20
        assert summary["workers"]["stage1"]["version"] == 20
    else:
        assert all(w["step"] == 20 for w in summary["workers"].values())
    _assert_no_worker_left(_worker_pids(run.path))
