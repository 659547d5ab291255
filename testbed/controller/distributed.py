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
from testbed.controller.plan import WorkerPlan, device_of, peer_map, plan_workers
from testbed.controller.recovery import Recovery, resume_point
from testbed.controller.resplit import Resplitter, resplitter_for
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
from testbed.metrics.sink import Point
from testbed.runtime import workdir as contract
from testbed.runtime.config import WorkerConfig, write_config
from testbed.runtime.stage_io import ps_shaped
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
    resume_step: int = 0,
) -> dict[str, WorkerConfig]:
    """One config per worker; `hosts` gives each its bind address (default job.host);
    `resume_step` > 0 continues from the checkpoint at that step."""
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
            resume_step=resume_step,
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
    clients: WorkerClients,
    failure: _Failure,
    total: int,
    stall_s: float,
    bar: TrainingProgress,
    tick: Callable[[dict[str, Health]], None] | None = None,
    observe: Callable[[int], None] = lambda slowest: None,
) -> None:
    """Until every trainer reports done: fail fast on a death, a lost worker or a stall.
    `tick(health)` runs once per poll (a re-split acts there); `observe` hears the slowest
    trainer's step at every poll."""
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
        observe(slowest)
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
    launch = _Launch(spec, run, plans, workdir, t0, hosts, devices, cluster)
    schedule = link_schedule(spec, cluster, run.event, launch.inject)
    meter = cluster.power_meter(write, tags) if cluster is not None else None
    marks = _Marks(meter, schedule.start)
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
        while True:
            tail.poll()  # every line of the attempt before, so that the rewind drops it
            step = resume_point(workdir / contract.CHECKPOINTS)[0]
            # only after an earlier attempt (here or in the resumed process): on a fresh run the
            # records so far are a phase before the workers (the kt teacher's), not to be redone
            dropped = run.rewind(step) if any(workdir.glob("*" + contract.METRICS)) else 0
            if step or dropped:
                run.event("resumed", from_step=step, dropped_records=dropped)
            recovery.start_attempt(step)
            restart = recovery.point()
            if restart is not None:
                run.write(Point.now("failure", restart, tags))
            try:
                done = _attempt(spec, run, launch.configs(step), launch, progress, marks,
                                recovery, resplitter)  # fmt: skip
                break
            except WorkerFailedError as err:
                reason = explain_failure(str(err), cluster, run.event)
                run.event("worker_failed", reason=reason)  # stamped when noticed
                if not recovery.failed(reason):
                    raise WorkerFailedError(reason) from None
    evals, train_time, started, addresses, group = done
    body = {
        **summarize(spec, plans, workdir, evals, train_time, addresses, group, started - t0),
        **sink_counts,
        **recovery.summary(),
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
        self.meter_started = False
        if meter is not None:
            meter.mark("launch")

    def started(self) -> None:
        """Training starts (again, after a restart: energy still counts from the first start)."""
        if self.meter is not None and not self.meter_started:
            self.meter.mark("train_start")
            self.meter_started = True
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


class _Launch:
    """How to start this run's workers: their configs and commands, fresh for each attempt."""

    def __init__(self, spec: Spec, run: RunDir, plans: list[WorkerPlan], workdir: Path, t0: float,
                 hosts: dict[str, str], devices: dict[str, str | None],
                 cluster: RunCluster | None) -> None:  # fmt: skip
        self.spec, self.run, self.plans, self.workdir, self.t0 = spec, run, plans, workdir, t0
        self.hosts, self.devices, self.cluster = hosts, devices, cluster
        self.group: WorkerGroup | None = None  # the running attempt's workers

    def inject(self, entry: Any) -> dict[str, Any]:
        """A scheduled fault aimed at a worker (`worker: ps`): signal its process group."""
        if self.group is None:
            raise RuntimeError(f"{entry.label}: no workers are running")
        sig = {"kill": signal.SIGKILL, "pause": signal.SIGSTOP, "resume": signal.SIGCONT}[entry.fault]
        return {"worker": entry.worker, "pids": [self.group.signal(entry.worker, sig)]}

    def configs(self, step: int) -> dict[str, WorkerConfig]:
        """Configs continuing from checkpoint `step`; an earlier attempt's reports are removed."""
        configs = worker_configs(self.spec, self.plans, self.workdir, self.run.run_id, self.t0,
                                 self.hosts, step)  # fmt: skip
        for cfg in configs.values():
            for stale in (contract.READY, contract.SUMMARY):
                cfg.path(stale).unlink(missing_ok=True)
            write_config(cfg, cfg.path(contract.CONFIG))
        return configs

    def commands(self, configs: dict[str, WorkerConfig]) -> list[WorkerCommand]:
        cluster = self.cluster
        return [_command(cfg, cfg.path(contract.CONFIG),
                         cluster.launcher(self.devices[name]) if cluster else None)
                for name, cfg in configs.items()]  # fmt: skip


def _attempt(
    spec: Spec,
    run: RunDir,
    configs: dict[str, WorkerConfig],
    launch: _Launch,
    progress: bool,
    marks: _Marks,
    recovery: Recovery,
    resplitter: Resplitter | None = None,
) -> tuple[list[Any], float, float, dict[str, str], WorkerGroup]:
    """Start every worker, train to the end, stop them; WorkerFailedError when one fails."""
    failure = _Failure()
    trainers = [p.name for p in launch.plans if p.role != "ps"]
    with spawn_workers(launch.commands(configs)) as group, \
            watch(group, failure.record, interval=_POLL_S):  # fmt: skip
        launch.group = group
        run.event("workers_started", pids=group.pids)
        addresses = wait_ready(configs, failure, spec.job.startup_timeout_s)
        run.event("workers_ready", addresses=addresses)
        evals, train_time, started = _train(
            spec, run, launch.plans, addresses, failure, progress, marks, resplitter, recovery
        )
        _wait_trainers_exit(group, trainers)
    return evals, train_time, started, addresses, group


def _train(
    spec: Spec,
    run: RunDir,
    plans: list[WorkerPlan],
    addresses: dict[str, str],
    failure: _Failure,
    progress: bool,
    marks: _Marks | None = None,
    resplitter: Resplitter | None = None,
    recovery: Recovery | None = None,
) -> tuple[list[Any], float, float]:
    """Start the trainers, follow them to the end, wait for the final evaluation, stop them.
    Returns the evaluations, the training time and when training started (Unix seconds)."""
    total, job = spec.training.iterations, spec.job
    observe = recovery.observe if recovery is not None else (lambda slowest: None)
    with WorkerClients(plans, addresses, job.deadline_s, job.hang_timeout_s, run.event) as clients:
        started, started_at = time.monotonic(), time.time()
        clients.start_all(run.run_id, spec, peer_map(plans, addresses))
        run.event("training_started")
        if marks is not None:
            marks.started()
        stall_s = max(120.0, 3 * spec.job.deadline_s)
        tick = None if resplitter is None else clients.resplit_tick(resplitter)
        with TrainingProgress(spec.name, total, progress) as bar:
            monitor(clients, failure, total, stall_s, bar, tick, observe)
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
