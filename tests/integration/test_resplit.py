"""Privileged tier: a real re-split mid-run on three local-backend devices (job.resplit)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from testbed.controller.experiment import run_experiment
from testbed.data import load_dataset
from testbed.metrics.run_dir import read_summary
from testbed.models import get_model, resolve_split
from testbed.runtime import workdir
from testbed.runtime.checkpoints import load_checkpoint
from testbed.runtime.parameter_server import Evaluator
from testbed.runtime.replica import build_replica
from testbed.spec.load import parse_spec

pytestmark = [
    pytest.mark.privileged,
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (cgroups: the schedule cuts a CPU quota)"),
]


STEPS = 480


def _raw() -> dict[str, Any]:
    return {
        "name": "resplit",
        # fc1 (6272 x 256) is the heaviest unit; it starts on d1 with the pool
        "model": {"name": "four-layer", "split_after": ["conv1_conv1", "fc1"]},
        "algorithm": {"name": "sg", "sg": {"lr": 3.0e-3, "kernel": 1}},
        "training": {"batch_size": 32, "lr": 1.0e-3, "iterations": STEPS, "eval_every": 40,
                     "log_every": 10, "eval_samples": 1000, "threads": 1},
        "job": {"mode": "sg", "resplit": {"on": "schedule", "threshold": 0.05,
                                          "min_interval_s": 1}},
        "cluster": {
            "devices": [{"name": f"d{i}", "cpus": 1.0, "memory": "2g"} for i in range(3)],
            # d1 cut to a tenth mid-run (steps 50-150 on this machine kind; the first take ~3 s)
            "schedule": [{"at_s": 10.0, "device": "d1", "cpus": 0.1}],
        },
    }


@pytest.fixture(scope="module")
def resplit_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    """One re-split run, shared by the mechanics test and the accuracy test."""
    spec = parse_spec(_raw())
    return spec, run_experiment(spec, tmp_path_factory.mktemp("resplit"), progress=False).path


def _evals(run_path: Path) -> dict[int, float]:
    return {e["step"]: e["test_acc"] for e in read_summary(run_path)["evaluations"]}


def test_resplit_moves_units_and_the_assembled_model_still_evaluates(
    resplit_run: tuple[Any, Path],
) -> None:
    spec, path = resplit_run
    s = read_summary(path)
    assert s["status"] == "completed"
    resplit = s["resplit"]
    assert resplit["count"] == 1, resplit
    done = resplit["resplits"][0]
    # fc1 leaves the slowed device for a neighbour
    assert done["old_split"] == ["conv1_conv1", "fc1"]
    held = resolve_split(get_model("four-layer"), done["new_split"])
    assert "fc1" not in held[1] and done["new_bound_it_s"] > done["current_bound_it_s"]
    assert done["workers_done"] == 3 and done["pause_s"] > 0
    records = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]
    moved = [r for r in records if r["kind"] == "resplit"]
    assert sorted(r["worker"] for r in moved) == ["d0", "d1", "d2"]
    assert {r["epoch"] for r in moved} == {1} and len({r["batch_id"] for r in moved}) == 1
    # fc1 stays a boundary on its new owner d0 and keeps its trained SG module (carried from
    # d1 through the parameter server); fc2's boundary on d1 is new and starts fresh
    by_worker = {r["worker"]: r for r in moved}
    assert (by_worker["d0"]["carried_sg_module"], by_worker["d0"]["new_sg_module"]) == (1, 0)
    assert (by_worker["d1"]["carried_sg_module"], by_worker["d1"]["new_sg_module"]) == (0, 1)
    drain = moved[0]["batch_id"]
    assert 1 < drain < STEPS  # mid-run: the moved units had trained
    evals = _evals(path)
    assert drain in evals  # the drain batch's weights (old owners' units) form a full version
    after = min(step for step in evals if step > drain)
    # the accuracy curve is continuous: the moved units arrive trained (re-initialised ones
    # would drop it to chance), and the run evaluates to its last step on the new split
    assert evals[after] >= evals[drain] - 0.05, (drain, evals)
    assert max(evals) == STEPS, evals
    # the parameter server regrouped the new stages' pushes into the spec's stages: its final
    # checkpoint, loaded into the spec's split in this process, scores what it reported
    version, stages = load_checkpoint(workdir.workers_dir(path) / workdir.CHECKPOINT)
    assert version == STEPS
    replica = build_replica(spec)
    for stage, arrays in zip(replica.stages, stages, strict=True):
        stage.model.set_weights(arrays)
    evaluator = Evaluator(replica, load_dataset("mnist"), spec.training.eval_samples)
    named = [dict(zip(_names(st.model), st.model.get_weights(), strict=True))
             for st in replica.stages]
    assert evaluator(named) == pytest.approx(s["final_test_accuracy"], abs=1e-9)
    assert all(np.isfinite(a).all() for arrays in stages for a in arrays)


@pytest.mark.xfail(strict=False, reason="known limitation, docs/partition.md: with fc1's SG "
                   "module carried to its new owner the dip right after the warm-up is gone, but "
                   "sg dips later in the run (ends 0.59-0.85 in 6 runs, 3 pass); without any "
                   "re-split sg on [fc1, fc2] with d1 at 0.1 CPU also dips (to 0.44) and ends "
                   "0.80-0.87")
def test_sg_accuracy_recovers_after_the_resplit(resplit_run: tuple[Any, Path]) -> None:
    """Training goes on well on the new split: the end is above 0.8 and within 0.05 of the
    accuracy at the drain (sg from scratch on the new split reaches 0.93 by step 480)."""
    _, path = resplit_run
    evals = _evals(path)
    records = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]
    drain = next(r["batch_id"] for r in records if r["kind"] == "resplit")
    assert evals[STEPS] > 0.8 and evals[STEPS] >= evals[drain] - 0.05, evals


def _names(model: Any) -> list[str]:
    from testbed.runtime.replica import weight_names

    return weight_names(model)
