"""A distributed run's attempts: launch the workers; on a failure, restart all from a checkpoint."""

from __future__ import annotations

import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testbed.controller.cluster_run import RunCluster, explain_failure
from testbed.controller.follow import POLL_S, Failure, Marks, train, wait_ready
from testbed.controller.plan import WorkerPlan
from testbed.controller.recovery import Recovery, resume_point
from testbed.controller.resplit import Resplitter
from testbed.controller.supervisor import WorkerCommand, WorkerGroup, spawn_workers, watch
from testbed.controller.tail import MetricsTail
from testbed.controller.workers import WorkerFailedError
from testbed.metrics.run_dir import RunDir
from testbed.metrics.sink import Point
from testbed.runtime import workdir as contract
from testbed.runtime.config import WorkerConfig, write_config
from testbed.spec.experiment import Spec


@dataclass(frozen=True)
class Finished:
    """The attempt that trained to the end: its evaluations, training time, start (Unix s),
    worker addresses and processes."""

    evals: list[Any]
    train_time: float
    started: float
    addresses: dict[str, str]
    group: WorkerGroup


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


class Launch:
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


def run_attempts(
    launch: Launch,
    tail: MetricsTail,
    recovery: Recovery,
    tags: dict[str, str],
    progress: bool,
    marks: Marks,
    resplitter: Resplitter | None = None,
) -> Finished:
    """Attempt until one trains to the end; after a failure, Recovery (job.on_failure) decides
    whether all workers start again from the latest checkpoint or the run fails."""
    while True:
        step = _rewind(launch, tail, recovery, tags)
        try:
            return attempt(launch, launch.configs(step), progress, marks, recovery, resplitter)
        except WorkerFailedError as err:
            reason = explain_failure(str(err), launch.cluster, launch.run.event)
            launch.run.event("worker_failed", reason=reason)  # stamped when noticed
            if not recovery.failed(reason):
                raise WorkerFailedError(reason) from None


def _rewind(launch: Launch, tail: MetricsTail, recovery: Recovery, tags: dict[str, str]) -> int:
    """Drop the run's records after the latest checkpoint and open the next attempt there;
    returns the checkpoint's step (0: from the start)."""
    run, workdir = launch.run, launch.workdir
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
    return step


def attempt(
    launch: Launch,
    configs: dict[str, WorkerConfig],
    progress: bool,
    marks: Marks,
    recovery: Recovery,
    resplitter: Resplitter | None = None,
) -> Finished:
    """Start every worker, train to the end, stop them; WorkerFailedError when one fails."""
    spec, run, failure = launch.spec, launch.run, Failure()
    trainers = [p.name for p in launch.plans if p.role != "ps"]
    with spawn_workers(launch.commands(configs)) as group, \
            watch(group, failure.record, interval=POLL_S):  # fmt: skip
        launch.group = group
        run.event("workers_started", pids=group.pids)
        addresses = wait_ready(configs, failure, spec.job.startup_timeout_s)
        run.event("workers_ready", addresses=addresses)
        evals, train_time, started = train(
            spec, run, launch.plans, addresses, failure, progress, marks, resplitter, recovery
        )
        _wait_trainers_exit(group, trainers)
    return Finished(evals, train_time, started, addresses, group)


def _wait_trainers_exit(group: WorkerGroup, names: list[str], timeout_s: float = 10.0) -> None:
    """Give stopped trainers a moment to exit on their own (they flush their metrics)."""
    deadline = time.monotonic() + timeout_s
    while {e.name for e in group.exits()} < set(names) and time.monotonic() < deadline:
        group.wait_for_exits(len(group.exits()), timeout=POLL_S)
