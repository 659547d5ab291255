"""Time to accuracy: the first evaluation at or above each level, timed without evaluation."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from testbed.controller.run_stats import eval_points, version_times
from testbed.metrics.time_to_accuracy import (
    EvalPoint,
    from_summary,
    reached,
    summary_block,
    time_to_accuracy,
)
from testbed.runtime.wire.serde_ps import Evaluation

POINTS = [  # out of step order on purpose; accuracy dips after step 200
    EvalPoint(300, 30.0, 0.91),
    EvalPoint(100, 10.0, 0.60),
    EvalPoint(400, 40.0, 0.95),
    EvalPoint(200, 20.0, 0.92),
]


def test_each_level_is_the_first_evaluation_at_or_above_it() -> None:
    got = time_to_accuracy(POINTS, [0.5, 0.9, 0.92, 0.95, 0.99])
    assert [(r.level, r.step, r.train_s) for r in got] == [
        (0.5, 100, 10.0), (0.9, 200, 20.0), (0.92, 200, 20.0), (0.95, 400, 40.0),
        (0.99, None, None)]
    assert [r.reached for r in got] == [True, True, True, True, False]


def test_summary_block_round_trips_and_answers_unlisted_levels() -> None:
    block = summary_block(POINTS, [0.9, 0.99])
    assert [e["step"] for e in block["evaluations"]] == [100, 200, 300, 400]
    assert block["time_to_accuracy"] == [
        {"level": 0.9, "step": 200, "train_s": 20.0},
        {"level": 0.99, "step": None, "train_s": None}]
    assert from_summary(block) == sorted(POINTS, key=lambda p: p.step)
    assert reached(block, 0.9).train_s == 20.0
    assert reached(block, 0.93).step == 400  # not listed: found in the evaluations
    assert not reached({}, 0.9).reached


def test_distributed_versions_are_timed_at_the_last_workers_snapshot() -> None:
    workers = {
        "stage0": {"snapshots": {"10": 5.0, "20": 9.0, "30": 12.0}},
        "stage1": {"snapshots": {"10": 6.0, "20": 8.5}},
        "teacher": {},  # holds no weights: not counted
    }
    assert version_times(workers) == {10: 6.0, 20: 9.0}  # 30: stage1 never had it
    evals = [Evaluation(10, 0.5, 50.0, 7.0), Evaluation(20, 0.8, 60.0, 9.5),
             Evaluation(30, 0.9, 70.0, 14.0)]
    points = eval_points(evals, workers, start_s=2.0)
    # snapshot time (not the evaluation's end); the server's ready_s when no worker has it
    assert points == [EvalPoint(10, 4.0, 0.5), EvalPoint(20, 7.0, 0.8), EvalPoint(30, 12.0, 0.9)]


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_in_process_loop_times_evaluations_without_evaluation_time(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    """Every step takes 1 s and every evaluation 100 s of a fake clock: train_s counts steps."""
    from testbed.metrics.run_dir import RunDir
    from testbed.spec.load import parse_spec
    from testbed.testing.datasets import quadrants
    from testbed.training import loop
    from testbed.training.kt_phase import Phase
    from testbed.training.loop import Recorder, train

    clock = _Clock()
    monkeypatch.setattr(loop.time, "perf_counter", clock)
    spec = parse_spec({"name": "tta", "model": {"name": "four-layer"}, "algorithm": {"name": "bp"},
                       "training": {"iterations": 30, "batch_size": 8, "eval_every": 10,
                                    "log_every": 5}})
    accs = iter([0.5, 0.95, 0.97])

    def compile_step():
        def step(x: np.ndarray, y: np.ndarray):
            clock.now += 1.0
            return tf.constant(1.0), tf.constant(1), tf.constant(0.0)
        return step

    def evaluator():
        def evaluate() -> float:
            clock.now += 100.0
            return next(accs)
        return evaluate

    phase = Phase(spec, quadrants(), compile_step, evaluator)
    run = RunDir(tmp_path / "run")
    result = train(phase, Recorder(run, {}), progress=False)  # type: ignore[arg-type]
    run.close()
    assert result["evaluations"] == [
        {"step": 10, "train_s": 10.0, "test_acc": 0.5},
        {"step": 20, "train_s": 20.0, "test_acc": 0.95},
        {"step": 30, "train_s": 30.0, "test_acc": 0.97}]
    assert keras is not None
