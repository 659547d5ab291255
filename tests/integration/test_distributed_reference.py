"""Every distributed mode against the in-process reference of the same seed (real worker
processes, real gRPC, real MNIST): backprop modes step for step, SG to a stated tolerance."""

from __future__ import annotations

from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from testbed.controller.experiment import run_experiment
from testbed.data import load_dataset
from testbed.data.batches import batch_indices
from testbed.metrics.run_dir import read_summary
from testbed.runtime.checkpoints import load_checkpoint
from testbed.spec.experiment import Spec
from testbed.spec.load import parse_spec
from testbed.training.session import Session, fetch_batch

pytestmark = pytest.mark.slow


def _spec(mode: str, steps: int, split: list[str], **over: Any) -> Spec:
    raw: dict[str, Any] = {
        "name": f"ref-{mode}",
        "model": {"name": "four-layer", "split_after": split, "width": 0.5},
        "algorithm": {"name": {"sg": "sg", "local": "local"}.get(mode, "bp"),
                      "sg": {"lr": 3.0e-3}},
        "training": {"batch_size": 32, "optimizer": "sgd", "lr": 0.05, "iterations": steps,
                     "eval_every": steps, "log_every": 5, "eval_samples": 500, "threads": 1},
        "job": {"mode": mode},
    }
    for key, value in over.items():
        raw[key] = {**raw.get(key, {}), **value}
    return parse_spec(raw)


def _distributed(spec: Spec, tmp_path: Path) -> list[list[np.ndarray]]:
    """Run it over worker processes; the parameter server's final weights per stage."""
    return _run_distributed(spec, tmp_path)[0]


def _run_distributed(spec: Spec, tmp_path: Path) -> tuple[list[list[np.ndarray]], dict[str, Any]]:
    """(the parameter server's final weights per stage, the run's summary)."""
    run = run_experiment(spec, tmp_path, progress=False)
    summary = read_summary(run.path)
    assert summary["status"] == "completed"
    version, stages = load_checkpoint(run.path / "workers" / "checkpoint")
    assert version == spec.training.iterations
    return stages, summary


def _in_process(spec: Spec) -> tuple[list[list[np.ndarray]], list[list[np.ndarray]]]:
    """The same spec in process, same seed and batch order: (initial, final) weights per stage."""
    ref = spec.model_copy(update={"job": spec.job.model_copy(update={"mode": "inprocess"})})
    data = load_dataset("mnist")
    session = Session.build(ref, data)
    initial = [s.model.get_weights() for s in session.stages]
    step = session.compile_step()
    t = ref.training
    for idx in islice(batch_indices(len(data.y_train), t.batch_size, t.seed), t.iterations):
        step(*fetch_batch(data, idx))
    return initial, [s.model.get_weights() for s in session.stages]


@pytest.mark.parametrize(("mode", "job"), [
    pytest.param("bp-sync", {}, id="bp-sync"),
    pytest.param("bp-pipeline", {"micro_batches": 4}, id="bp-pipeline"),
    pytest.param("bp-local", {}, id="bp-local"),
    # one replica: asynchronous SGD with no concurrency, so deterministic
    pytest.param("dp-async", {"replicas": 1}, id="dp-async"),
])
def test_bp_modes_give_the_in_process_weights(tmp_path: Path, mode: str, job: dict) -> None:
    """3 SGD steps: every weight of every stage where in-process backprop puts it."""
    spec = _spec(mode, 3, ["conv1", "fc1"], job={"mode": mode, **job})
    got = _distributed(spec, tmp_path)
    initial, want = _in_process(spec)
    for start, end, mine in zip(initial, want, got, strict=True):
        for a, b, c in zip(start, end, mine, strict=True):
            assert not np.array_equal(a, b) or not b.any()  # training moved the weights
            np.testing.assert_allclose(c, b, rtol=1e-4, atol=1e-6)


def _moves(initial: list[list[np.ndarray]], final: list[list[np.ndarray]]) -> np.ndarray:
    return np.array([np.sqrt(sum(float(np.sum((b - a) ** 2)) for a, b in zip(s, e, strict=True)))
                     for s, e in zip(initial, final, strict=True)])


def test_sg_matches_in_process_every_stage(tmp_path: Path) -> None:
    """Three SG workers (two dense SG modules) vs in process, with Adam: targets come late over
    the network, so trajectories differ, but every stage must move as far as in process (within
    2x). A frozen SG module leaves its stage where it started (Adam moves a stage by about lr per
    step whatever the gradient's size; the fast tier checks sizes with plain SGD)."""
    spec = _spec("sg", 40, ["fc1", "fc2"], training={"optimizer": "adam", "lr": 1.0e-3})
    got = _distributed(spec, tmp_path)
    initial, want = _in_process(spec)
    ratio = _moves(initial, got) / _moves(initial, want)
    assert np.all((ratio > 0.5) & (ratio < 2.0)), ratio


def test_local_gives_the_in_process_weights_and_sends_nothing_back(tmp_path: Path) -> None:
    """Three local-loss workers, 6 SGD steps: every stage where in-process local-loss puts it
    (nothing waits for a backward message, so nothing is stale or lost), activations go forward
    once per step and not one message goes back (counted by every worker)."""
    steps = 6
    spec = _spec("local", steps, ["conv1", "fc1"])
    got, summary = _run_distributed(spec, tmp_path)
    peers = {n: w["peers"] for n, w in summary["workers"].items()}
    assert set(peers) == {"stage0", "stage1", "stage2"}
    for name, counts in peers.items():
        assert "sent:upstream" not in counts and "received:downstream" not in counts, name
    assert peers["stage0"]["sent:downstream"]["messages"] == steps
    assert peers["stage1"]["received:upstream"]["messages"] == steps
    assert peers["stage1"]["sent:downstream"]["messages"] == steps
    assert "sent:downstream" not in peers["stage2"]
    initial, want = _in_process(spec)
    for start, end, mine in zip(initial, want, got, strict=True):
        for a, b, c in zip(start, end, mine, strict=True):
            assert not np.array_equal(a, b) or not b.any()  # training moved the weights
            np.testing.assert_allclose(c, b, rtol=1e-4, atol=1e-6)
