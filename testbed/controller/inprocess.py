"""Run an experiment in one process: the reference every distributed run is checked against."""

from __future__ import annotations

import platform
import socket
import sys
import time
from typing import Any

import tensorflow as tf

from testbed.controller.progress import TrainingProgress
from testbed.controller.session import Session, configure_threads, fetch_batch
from testbed.controller.sinks import close_influx, open_influx
from testbed.data import Dataset, load_dataset
from testbed.data.batches import batch_indices
from testbed.metrics.run_dir import RunDir
from testbed.metrics.sink import Point
from testbed.planner.profile import profile_stages
from testbed.spec import Spec


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


def sg_cost(session: Session) -> list[dict[str, Any]]:
    """Extra parameters and measured compute of each SG module relative to its stage."""
    t = session.spec.training
    profiles = profile_stages(session.stages, session.sgs, t.batch_size, session.data.num_classes)
    return [
        {
            **p.as_dict(),
            "extra_params_fraction": p.sg_params / max(p.params, 1),
            "extra_compute_fraction": p.sg_step_s / p.step_s if p.step_s else 0.0,
        }
        for p in profiles[:-1]
    ]


def train(session: Session, rec: Recorder, progress: bool = True) -> dict[str, Any]:
    """The training loop: steps, periodic logging and evaluation. Returns the loop's results."""
    t, data = session.spec.training, session.data
    step_fn, evaluate = session.compile_step(), session.evaluator()
    batches = batch_indices(len(data.y_train), t.batch_size, t.seed)
    evals: list[tuple[int, float]] = []
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
                evals.append((step, acc))
                rec.point("eval", step=step, test_acc=acc, wall_s=time.perf_counter() - start)
                rec.run.flush()
                bar.update(step, it_s, acc)
                window_t = time.perf_counter()  # evaluation time is not training time
    return {
        "iterations": t.iterations,
        "final_test_accuracy": evals[-1][1],
        "best_test_accuracy": max(a for _, a in evals),
        "mean_it_s": t.iterations / train_time,
        "train_time_s": train_time,
        "loop_wall_s": time.perf_counter() - start,
    }


def run_inprocess(spec: Spec, run: RunDir, progress: bool = True) -> dict[str, Any]:
    """Train the spec's model in this process; writes metrics and returns the summary body."""
    if spec.algorithm.name == "kt":
        from testbed.controller.kt_run import run_kt  # kt_run imports this module

        return run_kt(spec, run, progress)
    configure_threads(spec.training.threads)
    data = load_dataset(spec.data.dataset)
    run.event("data_loaded", source=data.source)
    session = Session.build(spec, data)
    tags = {"run": run.run_id, "experiment": spec.name, "mode": spec.job.mode}
    influx = open_influx(spec, run)
    try:
        result = train(session, Recorder(run, tags, [influx] if influx else None), progress)
    finally:
        sink_counts = close_influx(influx, run)
    summary: dict[str, Any] = {
        **result,
        **sink_counts,
        **environment_info(data),
        "params": session.param_counts(),
        "stages": [list(s.units) for s in session.stages],
    }
    if session.sgs:
        summary["sg_cost"] = sg_cost(session)
    return summary
