"""Follow one attempt's workers: wait until they listen, start, watch training, evaluate, stop."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from testbed.controller.plan import WorkerPlan, peer_map
from testbed.controller.recovery import Recovery
from testbed.controller.resplit import Resplitter
from testbed.controller.supervisor import WorkerExit
from testbed.controller.workers import WorkerClients, WorkerFailedError
from testbed.metrics.run_dir import RunDir
from testbed.runtime import workdir as contract
from testbed.runtime.config import WorkerConfig
from testbed.runtime.wire.serde import Health
from testbed.spec.experiment import Spec
from testbed.training.progress import TrainingProgress

POLL_S = 0.25
_READY_POLL_S = 0.05
_EVAL_TIMEOUT_S = 600.0


class Failure:
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


class Marks:
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


def wait_ready(
    configs: dict[str, WorkerConfig], failure: Failure, timeout_s: float
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
    failure: Failure,
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
        failure.check(POLL_S)
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


def final_evaluation(clients: WorkerClients, failure: Failure, version: int) -> list[Any]:
    """Wait for the parameter server to evaluate `version`; returns all evaluations."""
    deadline = time.monotonic() + _EVAL_TIMEOUT_S
    while True:
        failure.check(POLL_S)
        status = clients.ps.status()
        if any(e.step >= version for e in status.evaluations):
            return list(status.evaluations)
        if time.monotonic() > deadline:
            raise WorkerFailedError(
                f"parameter server did not evaluate version {version} "
                f"within {_EVAL_TIMEOUT_S:.0f} s (has {status.version})"
            )


def train(
    spec: Spec,
    run: RunDir,
    plans: list[WorkerPlan],
    addresses: dict[str, str],
    failure: Failure,
    progress: bool,
    marks: Marks | None = None,
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
