"""The in-process training loop: steps, periodic logging and evaluation, a recorder for points."""

from __future__ import annotations

import math
import platform
import socket
import sys
import time
from pathlib import Path
from typing import Any

import tensorflow as tf

from testbed.data import Dataset, load_dataset
from testbed.data.batches import BatchSampler
from testbed.metrics.run_dir import RunDir
from testbed.metrics.sink import Point
from testbed.metrics.time_to_accuracy import EvalPoint
from testbed.spec.experiment import Spec
from testbed.training.interrupt import stop_at_step_boundary
from testbed.training.progress import TrainingProgress
from testbed.training.resume import Position, restore_state, save_state
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


class KindRecorder:
    """A view of a Recorder that prefixes point kinds and renames fields.

    The KT teacher phase writes `teacher_train`/`teacher_eval`, the fine-tune `finetune_*`, so
    the student's own `train`/`eval` curve (what figures and compare read) stays the method's;
    local-loss runs name their auxiliary loss `local_loss`.
    """

    def __init__(self, rec: Any, prefix: str = "", rename: dict[str, str] | None = None) -> None:
        self.rec, self.prefix, self.rename = rec, prefix, rename or {}
        self.run: RunDir = rec.run

    def point(self, kind: str, **fields: float) -> None:
        self.rec.point(self.prefix + kind, **{self.rename.get(k, k): v for k, v in fields.items()})


def environment_info(data: Dataset) -> dict[str, Any]:
    return {
        "data_source": data.source,
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "tf_version": tf.__version__,
    }


def train(
    session: Session, rec: Recorder, progress: bool = True, checkpoints: Path | None = None
) -> dict[str, Any]:
    """The training loop: steps, periodic logging, evaluation and checkpoints.

    With `checkpoints` (a directory) the loop first continues from the latest checkpoint there
    (dropping the run's records past it), writes one every `training.checkpoint_interval`
    steps, and on Ctrl-C writes one at the step boundary before it raises KeyboardInterrupt.
    Returns the loop's results, counted over every part of a resumed run.
    """
    t = session.spec.training
    loop = _Loop(session, rec, checkpoints)
    with TrainingProgress(session.spec.name, t.iterations, progress) as bar, \
            stop_at_step_boundary() as stop:  # fmt: skip
        bar.update(loop.pos.step, 0.0)
        for step in range(loop.pos.step + 1, t.iterations + 1):
            loop.step(step, bar)
            paused = step % t.eval_every == 0 or step == t.iterations
            if paused:
                loop.evaluate(step, bar)
            if (loop.every and step % loop.every == 0) or stop.is_set():
                loop.checkpoint()
                paused = True
            if stop.is_set():
                rec.run.event("interrupted_at", step=step, checkpoint=loop.dir is not None)
                raise KeyboardInterrupt
            if paused:
                loop.window_t = time.perf_counter()  # evaluation time is not training time
    return loop.results()


class _Loop:
    """One run of the loop: its compiled step, sampler, clock and checkpoint directory."""

    def __init__(self, session: Session, rec: Recorder, checkpoints: Path | None) -> None:
        self.session, self.rec = session, rec
        t = self.t = session.spec.training
        self.step_fn, self.evaluate_fn = session.compile_step(), session.evaluator()
        self.sampler = BatchSampler(len(session.data.y_train), t.batch_size, t.seed)
        self.parts = session.parts() if checkpoints is not None else {}
        self.pos = Position()
        self.every = t.checkpoint_interval(distributed=False) if checkpoints else 0
        self.dir = checkpoints if self.every else None  # where checkpoints are written
        if checkpoints is not None:
            self.pos = restore_state(checkpoints, self.parts, self.sampler)
            dropped = rec.run.rewind(self.pos.step)
            if self.pos.step or dropped:
                rec.run.event("resumed", from_step=self.pos.step, dropped_records=dropped)
        self.start = time.perf_counter() - self.pos.wall_s
        self.window_t, self.window_steps, self.it_s = time.perf_counter(), 0, 0.0

    def step(self, step: int, bar: TrainingProgress) -> None:
        t, t0 = self.t, time.perf_counter()
        loss, correct, sg_loss = self.step_fn(*fetch_batch(self.session.data, next(self.sampler)))
        self.window_steps += 1
        if not (step % t.log_every == 0 or step == t.iterations):
            self.pos.train_time_s += time.perf_counter() - t0
        else:
            loss_v = float(loss)  # syncs the step
            now = time.perf_counter()
            self.pos.train_time_s += now - t0
            self.it_s = self.window_steps / (now - self.window_t)
            self.rec.point("train", step=step, loss=loss_v, train_acc=int(correct) / t.batch_size,
                           sg_loss=float(sg_loss), it_s=self.it_s, wall_s=now - self.start)
            self.window_t, self.window_steps = now, 0
            bar.update(step, self.it_s)
        self.pos.step = step
        self.pos.wall_s = time.perf_counter() - self.start

    def evaluate(self, step: int, bar: TrainingProgress) -> None:
        acc = self.evaluate_fn()
        self.pos.evals.append(EvalPoint(step, self.pos.train_time_s, acc))
        at = {"step": step, "wall_s": time.perf_counter() - self.start,
              "train_s": self.pos.train_time_s}
        self.rec.point("eval", **at, **({} if math.isnan(acc) else {"test_acc": acc}))
        self.rec.run.flush()
        bar.update(step, self.it_s, acc)
        self.pos.wall_s = time.perf_counter() - self.start

    def checkpoint(self) -> None:
        if self.dir is not None:
            save_state(self.dir, self.parts, self.sampler, self.pos, self.t.checkpoint_keep)
            self.rec.run.flush()

    def results(self) -> dict[str, Any]:
        evals = self.pos.evals
        return {
            "iterations": self.t.iterations,
            "final_test_accuracy": evals[-1].test_acc,
            "best_test_accuracy": max(e.test_acc for e in evals),
            "evaluations": [e.as_dict() for e in evals],
            "mean_it_s": self.t.iterations / self.pos.train_time_s,
            "train_time_s": self.pos.train_time_s,
            "loop_wall_s": time.perf_counter() - self.start,
        }
