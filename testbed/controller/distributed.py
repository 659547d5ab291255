"""Run an experiment across worker processes: plan, set up the cluster and sinks, run the attempts
(controller.attempts), summarize, clean up."""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from testbed.controller.attempts import Finished, Launch, run_attempts
from testbed.controller.cluster_run import RunCluster, cluster_summary, link_schedule, run_cluster
from testbed.controller.follow import Marks
from testbed.controller.partition_plan import plan_run, with_measured
from testbed.controller.plan import WorkerPlan, device_of, plan_workers
from testbed.controller.recovery import Recovery, resume_point
from testbed.controller.resplit import Resplitter, resplitter_for
from testbed.controller.sinks import (
    closing_influx,
    fan_out,
    influx_writer,
    open_influx,
    point_tags,
)
from testbed.controller.tail import MetricsTail
from testbed.metrics.run_dir import RunDir
from testbed.runtime import workdir as contract
from testbed.runtime.stage_io import ps_shaped
from testbed.spec.experiment import Spec


class TerminatedError(RuntimeError):
    """The controller received SIGTERM; workers are stopped and the run is marked failed."""


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """Turn SIGTERM into TerminatedError (main thread only) so cleanup runs as for Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    owner = os.getpid()

    def handler(signum: int, frame: FrameType | None) -> None:
        if os.getpid() != owner:  # a forked helper (pyroute2 netns) told to stop: just exit
            os._exit(128 + signum)
        raise TerminatedError("controller received SIGTERM")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_distributed(spec: Spec, run: RunDir, progress: bool = True) -> dict[str, Any]:
    """Train across worker processes, inside spec.cluster's devices when it has one.

    Always stops the workers and takes the cluster down, also on failure and Ctrl-C.
    """
    part = plan_run(spec, run.event)
    spec = part.spec if part is not None else spec
    plans = plan_workers(spec)
    resplitter = resplitter_for(spec, part, run.event)
    with sigterm_raises(), run_cluster(spec, run.run_id, run.event) as cluster:
        if cluster is not None:
            cluster.probe()  # before any worker loads the links
            if not ps_shaped(spec):
                cluster.leave_observer_unshaped()
        body = _run_workers(spec, run, plans, cluster, progress, resplitter)
    if resplitter is not None:
        body["resplit"] = resplitter.summary()
    if part is not None:  # the prediction is the first plan's: measured only without re-splits
        resplit = body.get("resplit", {}).get("count", 0)
        body["partition"] = part.record if resplit else with_measured(part.record,
                                                                       body["per_worker"])
    return body


def _run_workers(
    spec: Spec, run: RunDir, plans: list[WorkerPlan], cluster: RunCluster | None, progress: bool,
    resplitter: Resplitter | None = None,
) -> dict[str, Any]:
    """Launch (on their devices), start, monitor and collect the workers; returns the summary.

    The run continues from the latest checkpoint in its workers' folder (a resumed run), and
    with job.on_failure: restart, every failure starts all workers again from the latest one.
    """
    workdir = contract.workers_dir(run.path)
    workdir.mkdir(parents=True, exist_ok=True)
    devices = {p.name: device_of(spec, p) for p in plans}
    hosts = {n: cluster.bind_host(d) for n, d in devices.items()} if cluster else {}
    t0 = time.time() - resume_point(workdir / contract.CHECKPOINTS)[1]  # wall time continues
    run.event("workers_planned", workers=[p.__dict__ for p in plans], devices=devices)
    influx = open_influx(spec, run)
    tags = point_tags(spec, run)
    write = fan_out(run.write, influx_writer(influx))
    launch = Launch(spec, run, plans, workdir, t0, hosts, devices, cluster)
    schedule = link_schedule(spec, cluster, run.event, launch.inject)
    meter = cluster.power_meter(write, tags) if cluster is not None else None
    marks = Marks(meter, schedule.start)
    tail_write = write
    if resplitter is not None:
        schedule.listeners.append(resplitter.on_schedule)
        tail_write = fan_out(write, resplitter.observe)
    recovery = Recovery(spec.job, run.event)
    with (
        closing_influx(influx, run) as sink_counts,
        meter or contextlib.nullcontext(),
        MetricsTail(workdir, tags, tail_write) as tail,
        schedule,
    ):
        done = run_attempts(launch, tail, recovery, tags, progress, marks, resplitter)
    body = {
        **summarize(spec, plans, workdir, done, done.started - t0),
        **sink_counts,
        **recovery.summary(),
    }
    if cluster is not None:
        body.update(cluster_summary(spec, plans, devices, body["workers"], cluster, schedule))
    if meter is not None:
        body["power"] = marks.summary()
    return body


def summarize(
    spec: Spec,
    plans: list[WorkerPlan],
    workdir: Path,
    done: Finished,
    start_s: float = 0.0,
) -> dict[str, Any]:
    """The run's summary: accuracy from the PS, steady rates and bytes from the worker reports;
    evaluations timed from the start of training (`start_s`, seconds since the workers' t0)."""
    from testbed.controller.run_stats import eval_points, run_stats

    workers = {
        p.name: contract.read_summary(workdir, p.name)
        for p in plans
        if p.role != "ps"
    }
    accs = [e.test_accuracy for e in done.evals]
    return {
        "iterations": spec.training.iterations,
        "final_test_accuracy": accs[-1],
        "best_test_accuracy": max(accs),
        "evaluations": [p.as_dict() for p in eval_points(done.evals, workers, start_s)],
        "train_time_s": done.train_time,
        **run_stats(spec, workers),
        "workers": workers,
        "topology": [
            {**p.__dict__, "address": done.addresses[p.name], "pid": done.group.pids[p.name]}
            for p in plans
        ],
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
    }
