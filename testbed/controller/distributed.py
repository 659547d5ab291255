"""Run an experiment across worker processes: plan, launch, start, monitor, collect, clean up."""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from testbed.controller.cluster_run import (
    RunCluster,
    cluster_summary,
    explain_failure,
    link_schedule,
    run_cluster,
)
from testbed.controller.partition_plan import plan_run, with_measured
from testbed.controller.resplit import Resplitter, resplitter_for
from testbed.controller.plan import WorkerPlan, device_of, peer_map, plan_workers
from testbed.controller.sinks import (
    closing_influx,
    fan_out,
    influx_writer,
    open_influx,
    point_tags,
)
from testbed.controller.supervisor import (
    WorkerCommand,
    WorkerExit,
    WorkerGroup,
    spawn_workers,
    watch,
)
from testbed.controller.tail import MetricsTail
from testbed.controller.workers import WorkerClients, WorkerFailedError
from testbed.metrics.run_dir import RunDir
from testbed.runtime import workdir as contract
from testbed.runtime.config import WorkerConfig, write_config
from testbed.runtime.wire.serde import Health
from testbed.spec.experiment import Spec
from testbed.training.progress import TrainingProgress

_POLL_S = 0.25
_READY_POLL_S = 0.05
_EVAL_TIMEOUT_S = 600.0


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


class _Failure:
    """The first worker failure, set from the watcher thread, checked by the controller loop."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.reason = ""

    def record(self, ended: WorkerExit) -> None:
        if not self.event.is_set():
            self.reason = ended.describe()
            self.event.set()

    def check(self, wait_s: float = 0.0) -> None:
        if self.event.wait(wait_s):
            raise WorkerFailedError(self.reason)


def worker_configs(
    spec: Spec,
    plans: list[WorkerPlan],
    workdir: Path,
    run_id: str,
    t0: float,
    hosts: dict[str, str] | None = None,
) -> dict[str, WorkerConfig]:
    """One config per worker; `hosts` gives each its bind address (default job.host)."""
    hosts = hosts or {}
    return {
        p.name: WorkerConfig(
            name=p.name,
            role=p.role,
            run_id=run_id,
            spec=spec,
            stage_ids=p.stage_ids,
            replica_index=p.replica_index,
            bind=f"{hosts.get(p.name, spec.job.host)}:0",
            advertise_host=None,
            workdir=workdir,
            t0=t0,
        )
        for p in plans
    }


def _command(cfg: WorkerConfig, path: Path, launch: Any = None) -> WorkerCommand:
    argv = [sys.executable, "-m", contract.WORKER_MODULE, str(path)]
    env = dict(contract.WORKER_ENV)
    return WorkerCommand(cfg.name, argv, env, log_path=cfg.path(contract.LOG), launch=launch)


def wait_ready(
    configs: dict[str, WorkerConfig], failure: _Failure, timeout_s: float
) -> dict[str, str]:
    """Addresses from the workers' ready files (written once their server listens)."""
    deadline = time.monotonic() + timeout_s
    addresses: dict[str, str] = {}
    while len(addresses) < len(configs):
        failure.check(_READY_POLL_S)
        for name, cfg in configs.items():
            address = None if name in addresses else contract.read_ready(cfg.workdir, name)
            if address is not None:
                addresses[name] = address
        if time.monotonic() > deadline:
            missing = sorted(set(configs) - set(addresses))
            raise WorkerFailedError(
                f"workers {missing} not ready within {timeout_s:.0f} s (job.startup_timeout_s)"
            )
    return addresses


def monitor(
    clients: WorkerClients, failure: _Failure, total: int, stall_s: float, bar: TrainingProgress,
    tick: Callable[[dict[str, Health]], None] | None = None,
) -> None:
    """Until every trainer reports done: fail fast on a death, a lost worker or a stall.
    `tick(health)` runs once per poll (a re-split acts there)."""
    last_change, last_steps = time.monotonic(), -1
    window, it_s = (time.monotonic(), 0), 0.0
    while True:
        failure.check(_POLL_S)
        health = clients.health(failure)
        if tick is not None:
            tick(health)
        steps = sum(h.step for h in health.values())
        if steps != last_steps:
            last_change, last_steps = time.monotonic(), steps
        elif time.monotonic() - last_change > stall_s:
            raise WorkerFailedError(
                f"no training progress for {stall_s:.0f} s: "
                f"{ {n: h.step for n, h in health.items()} }"
            )
        slowest, now = min(h.step for h in health.values()), time.monotonic()
        if now - window[0] >= 2.0:  # rate of the slowest trainer over the last seconds
            it_s, window = (slowest - window[1]) / (now - window[0]), (now, slowest)
        bar.update(min(slowest, total), it_s)
        if all(h.done for h in health.values()):
            return


def final_evaluation(clients: WorkerClients, failure: _Failure, version: int) -> list[Any]:
    """Wait for the parameter server to evaluate `version`; returns all evaluations."""
    deadline = time.monotonic() + _EVAL_TIMEOUT_S
    while True:
        failure.check(_POLL_S)
        status = clients.ps.status()
        if any(e.step >= version for e in status.evaluations):
            return list(status.evaluations)
        if time.monotonic() > deadline:
            raise WorkerFailedError(
                f"parameter server did not evaluate version {version} "
                f"within {_EVAL_TIMEOUT_S:.0f} s (has {status.version})"
            )


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
    """Launch (on their devices), start, monitor and collect the workers; returns the summary."""
    workdir = contract.workers_dir(run.path)
    workdir.mkdir(parents=True, exist_ok=True)
    devices = {p.name: device_of(spec, p) for p in plans}
    hosts = {n: cluster.bind_host(d) for n, d in devices.items()} if cluster else {}
    t0 = time.time()
    configs = worker_configs(spec, plans, workdir, run.run_id, t0, hosts)
    commands = []
    for name, cfg in configs.items():
        path = cfg.path(contract.CONFIG)
        write_config(cfg, path)
        launch = cluster.launcher(devices[name]) if cluster else None
        commands.append(_command(cfg, path, launch))
    tags = point_tags(spec, run)
    failure = _Failure()
    run.event("workers_planned", workers=[p.__dict__ for p in plans], devices=devices)
    influx = open_influx(spec, run)
    schedule = link_schedule(spec, cluster, run.event)
    write = fan_out(run.write, influx_writer(influx))
    meter = cluster.power_meter(write, tags) if cluster is not None else None
    marks = _Marks(meter, schedule.start)
    tail = write
    if resplitter is not None:
        schedule.listeners.append(resplitter.on_schedule)
        tail = fan_out(write, resplitter.observe)
    with (
        closing_influx(influx, run) as sink_counts,
        meter or contextlib.nullcontext(),
        spawn_workers(commands) as group,
        watch(group, failure.record, interval=_POLL_S),
        MetricsTail(workdir, tags, tail),
        schedule,
    ):
        run.event("workers_started", pids=group.pids)
        try:
            addresses = wait_ready(configs, failure, spec.job.startup_timeout_s)
            run.event("workers_ready", addresses=addresses)
            evals, train_time, started = _train(
                spec, run, plans, addresses, failure, progress, marks, resplitter
            )
        except WorkerFailedError as err:
            reason = explain_failure(str(err), cluster, run.event)
            run.event("worker_failed", reason=reason)  # stamped when noticed, before cleanup
            raise WorkerFailedError(reason) from None
        _wait_trainers_exit(group, [p.name for p in plans if p.role != "ps"])
    body = {
        **summarize(spec, plans, workdir, evals, train_time, addresses, group, started - t0),
        **sink_counts,
    }
    if cluster is not None:
        body.update(cluster_summary(spec, plans, devices, body["workers"], cluster, schedule))
    if meter is not None:
        body["power"] = marks.summary()
    return body


class _Marks:
    """The run's instants for the power meter: launch, start and end of training."""

    def __init__(self, meter: Any, on_start: Any) -> None:
        self.meter, self.on_start = meter, on_start
        if meter is not None:
            meter.mark("launch")

    def started(self) -> None:
        if self.meter is not None:
            self.meter.mark("train_start")
        self.on_start()  # the link schedule's clock starts with training

    def ended(self) -> None:
        if self.meter is not None:
            self.meter.mark("train_end")

    def summary(self) -> dict[str, Any]:
        """Energy over training (and, apart, over startup: launch to the start of training)."""
        body: dict[str, Any] = self.meter.summary("train_start", "train_end")
        startup = self.meter.summary("launch", "train_start")
        body["startup"] = {k: startup[k] for k in ("energy_j", "seconds") if k in startup}
        return body


def _train(
    spec: Spec,
    run: RunDir,
    plans: list[WorkerPlan],
    addresses: dict[str, str],
    failure: _Failure,
    progress: bool,
    marks: _Marks | None = None,
    resplitter: Resplitter | None = None,
) -> tuple[list[Any], float, float]:
    """Start the trainers, follow them to the end, wait for the final evaluation, stop them.
    Returns the evaluations, the training time and when training started (Unix seconds)."""
    total = spec.training.iterations
    with WorkerClients(plans, addresses, spec.job.deadline_s) as clients:
        started, started_at = time.monotonic(), time.time()
        clients.start_all(run.run_id, spec, peer_map(plans, addresses))
        run.event("training_started")
        if marks is not None:
            marks.started()
        stall_s = max(120.0, 3 * spec.job.deadline_s)
        tick = None if resplitter is None else clients.resplit_tick(resplitter)
        with TrainingProgress(spec.name, total, progress) as bar:
            monitor(clients, failure, total, stall_s, bar, tick)
        train_time = time.monotonic() - started
        if marks is not None:
            marks.ended()
        evals = final_evaluation(clients, failure, total)
        clients.stop_all("run complete")
    return evals, train_time, started_at


def _wait_trainers_exit(group: WorkerGroup, names: list[str], timeout_s: float = 10.0) -> None:
    """Give stopped trainers a moment to exit on their own (they flush their metrics)."""
    deadline = time.monotonic() + timeout_s
    while {e.name for e in group.exits()} < set(names) and time.monotonic() < deadline:
        group.wait_for_exits(len(group.exits()), timeout=_POLL_S)


def summarize(
    spec: Spec,
    plans: list[WorkerPlan],
    workdir: Path,
    evals: list[Any],
    train_time: float,
    addresses: dict[str, str],
    group: WorkerGroup,
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
    accs = [e.test_accuracy for e in evals]
    return {
        "iterations": spec.training.iterations,
        "final_test_accuracy": accs[-1],
        "best_test_accuracy": max(accs),
        "evaluations": [p.as_dict() for p in eval_points(evals, workers, start_s)],
        "train_time_s": train_time,
        **run_stats(spec, workers),
        "workers": workers,
        "topology": [
            {**p.__dict__, "address": addresses[p.name], "pid": group.pids[p.name]} for p in plans
        ],
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
    }
