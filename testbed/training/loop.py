"""The in-process training loop: steps, periodic logging and evaluation, a recorder for points."""

from __future__ import annotations

import math

import platform
import socket
import sys
import time
from typing import Any

import tensorflow as tf

from testbed.data import Dataset, load_dataset
from testbed.data.batches import batch_indices
from testbed.metrics.run_dir import RunDir
from testbed.metrics.sink import Point
from testbed.metrics.time_to_accuracy import EvalPoint
from testbed.spec.experiment import Spec
from testbed.training.progress import TrainingProgress
from testbed.training.session import Session, fetch_batch
from testbed.training.tfsetup import configure_threads


def setup(spec: Spec, run: RunDir) -> Dataset:
    """What every in-process run does first: TensorFlow's threads, then the dataset."""
    configure_threads(spec.training.threads)
    data = load_dataset(spec.data.dataset)
    run.event("data_loaded", source=data.source)
    return data


class Recorder:
    """Fans points out to the run directory and any extra sinks, with run-level tags."""

    def __init__(self, run: RunDir, tags: dict[str, str], extra: list[Any] | None = None) -> None:
        self.run, self.tags, self.sinks = run, tags, [run, *(extra or [])]

    def point(self, kind: str, **fields: float) -> None:
        p = Point.now(kind, fields, self.tags)
        for s in self.sinks:
            s.write(p)


def environment_info(data: Dataset) -> dict[str, Any]:
    return {
        "data_source": data.source,
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "tf_version": tf.__version__,
    }


def train(session: Session, rec: Recorder, progress: bool = True) -> dict[str, Any]:
    """The training loop: steps, periodic logging and evaluation. Returns the loop's results."""
    t, data = session.spec.training, session.data
    step_fn, evaluate = session.compile_step(), session.evaluator()
    batches = batch_indices(len(data.y_train), t.batch_size, t.seed)
    evals: list[EvalPoint] = []
    start = time.perf_counter()
    train_time, window_t, window_steps, it_s = 0.0, time.perf_counter(), 0, 0.0
    with TrainingProgress(session.spec.name, t.iterations, progress) as bar:
        for step in range(1, t.iterations + 1):
            t0 = time.perf_counter()
            loss, correct, sg_loss = step_fn(*fetch_batch(data, next(batches)))
            window_steps += 1
            if step % t.log_every == 0 or step == t.iterations:
                loss_v = float(loss)  # syncs the step
                now = time.perf_counter()
                it_s = window_steps / (now - window_t)
                train_time += now - t0
                rec.point("train", step=step, loss=loss_v, train_acc=int(correct) / t.batch_size,
                          sg_loss=float(sg_loss), it_s=it_s, wall_s=now - start)
                window_t, window_steps = now, 0
                bar.update(step, it_s)
            else:
                train_time += time.perf_counter() - t0
            if step % t.eval_every == 0 or step == t.iterations:
                acc = evaluate()
                evals.append(EvalPoint(step, train_time, acc))
                at = {"step": step, "wall_s": time.perf_counter() - start, "train_s": train_time}
                rec.point("eval", **at, **({} if math.isnan(acc) else {"test_acc": acc}))
                rec.run.flush()
                bar.update(step, it_s, acc)
                window_t = time.perf_counter()  # evaluation time is not training time
    return {
        "iterations": t.iterations,
        "final_test_accuracy": evals[-1].test_acc,
        "best_test_accuracy": max(e.test_acc for e in evals),
        "evaluations": [e.as_dict() for e in evals],
        "mean_it_s": t.iterations / train_time,
        "train_time_s": train_time,
        "loop_wall_s": time.perf_counter() - start,
    }
