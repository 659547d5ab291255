"""Re-split a running sg pipeline: re-plan when the cluster changes, tell the PS and the workers.

Triggers (`job.resplit.on`): `schedule`: a schedule entry changed a device's CPU quota or a
link (the cost model takes the new value); `drift`: a stage's measured compute per step moved
more than `threshold` from where it was against the plan's prediction (the device's speed is
re-estimated from it). Either way the partitioner re-plans over the same stage workers; when the
new plan's bound is at least `threshold` faster, the controller sends the new split to the
parameter server and then to every stage worker (runtime/resplit.py drains and rebuilds them).
Requests come from other threads (the schedule's, the metrics tail's); `poll` acts on them in
the controller's monitoring loop.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from typing import Any

from testbed.emulation.config import ScheduleEntry
from testbed.metrics.sink import Point
from testbed.planner.partition import Costs, Device, PartitionError, Plan, partition
from testbed.runtime.wire.serde import Resplit
from testbed.spec.experiment import ResplitCfg, Spec

Report = Callable[..., None]
_DRIFT_WINDOW_STEPS = 20  # steps per measured window of a stage's compute
_DRIFT_WINDOWS = 2  # consecutive drifted windows before the speed is re-estimated


class Resplitter:
    """Keeps the cost model of the stage devices current and re-splits when it pays."""

    def __init__(self, cfg: ResplitCfg, costs: Costs, plan: Plan, report: Report,
                 threads: int = 1) -> None:
        self.cfg, self.report, self.threads = cfg, report, threads
        self.chain, self.pairs = costs.chain, list(costs.pairs.values())
        self.devices: dict[str, Device] = dict(costs.devices)
        self.order = list(plan.devices)
        self.plan, self.epoch = plan, 0
        self._lock = threading.Lock()
        self._reason: str | None = None
        self._last_s = -float("inf")
        self._windows: dict[str, tuple[int, float]] = {}  # worker -> (step, compute_s) at start
        self._baseline: dict[str, float] = {}  # worker -> measured / predicted in the first window
        self._drifted: dict[str, int] = {}
        self.history: list[dict[str, Any]] = []

    # --- triggers (any thread) ------------------------------------------------------------------
    def on_schedule(self, entry: ScheduleEntry) -> None:
        """A schedule entry was applied: take its new quota or link rate into the cost model."""
        if self.cfg.on != "schedule":
            return
        with self._lock:
            if entry.cpus is not None and entry.device in self.devices:
                d = self.devices[entry.device]
                speed = min(entry.cpus, float(self.threads))  # as placement.device_speed
                self.devices[entry.device] = dataclasses.replace(d, speed=speed)
            if entry.rate_bps and entry.device in self.devices:
                d = self.devices[entry.device]
                self.devices[entry.device] = dataclasses.replace(d, link_bps=float(entry.rate_bps))
            self._reason = f"schedule at {entry.at_s:g}s: {entry.label}"

    def observe(self, point: Point) -> None:
        """A worker's metrics point: a stage's re-split done (timed), or with on: drift, its
        compute per step against the plan."""
        fields, worker = point.fields, point.tags.get("worker")
        if point.kind == "resplit":
            self._resumed(int(fields["epoch"]), point.time_ns / 1e9)
        if self.cfg.on != "drift" or point.kind != "worker" or worker not in self.order:
            return
        step, compute = int(fields.get("step", 0)), float(fields.get("compute_s", 0.0))
        with self._lock:
            start = self._windows.setdefault(worker, (step, compute))
            if step - start[0] < _DRIFT_WINDOW_STEPS:
                return
            self._windows[worker] = (step, compute)
            measured = (compute - start[1]) / (step - start[0])
            self._drift(worker, measured)

    def _drift(self, worker: str, measured: float) -> None:
        stage = self.plan.stages[self.order.index(worker)]
        ratio = measured / stage.compute_s if stage.compute_s > 0 else 1.0
        base = self._baseline.setdefault(worker, ratio)  # the profile's own bias, once
        if abs(ratio / base - 1) <= self.cfg.threshold:
            self._drifted[worker] = 0
            return
        self._drifted[worker] = self._drifted.get(worker, 0) + 1
        if self._drifted[worker] >= _DRIFT_WINDOWS:
            d = self.devices[worker]
            self.devices[worker] = dataclasses.replace(d, speed=d.speed * base / ratio)
            self._baseline.pop(worker)
            self._drifted[worker] = 0
            self._reason = f"drift: {worker} at {ratio / base:.2f}x its predicted step"

    # --- acting (the controller's loop) ---------------------------------------------------------
    def _resumed(self, epoch: int, at: float) -> None:
        """A stage worker finished re-splitting to `epoch` at Unix time `at`: the pipeline is
        back when the last one is (pause_s: from the command to then)."""
        with self._lock:
            record = next((r for r in self.history if r["epoch"] == epoch), None)
            if record is not None:
                record["workers_done"] = record.get("workers_done", 0) + 1
                record["pause_s"] = max(record.get("pause_s", 0.0), at - record["sent_at"])

    def poll(self, send: Callable[[Resplit], None]) -> None:
        """Re-plan if asked; re-split when the new plan is `threshold` faster. `send` delivers
        the new split (PS first, then the workers)."""
        now = time.monotonic()
        with self._lock:
            reason = self._reason
            if reason is None or now - self._last_s < self.cfg.min_interval_s:
                return
            self._reason = None
            costs = Costs(self.chain, [self.devices[d] for d in self.order], self.pairs)
        current = costs.plan(self.order, self.plan.ends)
        try:
            new = partition(costs, len(self.order), "fixed")
        except PartitionError as err:
            self.report("resplit_skipped", reason=reason, error=str(err))
            return
        gain = current.bottleneck_s / new.bottleneck_s - 1
        record = {"reason": reason, "old_split": self.chain_names(current),
                  "new_split": self.chain_names(new), "current_bound_it_s": current.it_s,
                  "new_bound_it_s": new.it_s, "gain": gain}
        if new.ends == current.ends or gain < self.cfg.threshold:
            self.plan = current
            self.report("resplit_skipped", **record)
            return
        self.epoch += 1
        record.update(epoch=self.epoch, sent_at=time.time())
        with self._lock:
            self.history.append(record)
            self._windows.clear()
            self._baseline.clear()
        send(Resplit(self.epoch, (*new.ends, self.chain.n - 1)))
        self.plan, self._last_s = new, now
        self.report("resplit", **record)

    def chain_names(self, plan: Plan) -> list[str]:
        return plan.split_after(self.chain)

    def summary(self) -> dict[str, Any]:
        return {"on": self.cfg.on, "threshold": self.cfg.threshold, "count": len(self.history),
                "resplits": self.history}


def resplitter_for(spec: Spec, part: Any, report: Report) -> Resplitter | None:
    """The run's resplitter when job.resplit is set (part: controller.partition_plan's
    RunPartition, made because of it)."""
    if spec.job.resplit is None or part is None:
        return None
    return Resplitter(spec.job.resplit, part.costs, part.plan, report, spec.training.threads or 1)
