"""The parameter server: global weights per stage, evaluation, checkpoints, async SGD."""

from __future__ import annotations

import math
import queue
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import tensorflow as tf

from testbed.algorithms.bp import accuracy_count, forward
from testbed.data import Dataset
from testbed.modes import get_mode
from testbed.runtime import splits
from testbed.runtime.appliers import make_appliers, warm_appliers
from testbed.runtime.carried_modules import CarriedModules
from testbed.runtime.checkpoints import CheckpointStore, save_checkpoint
from testbed.runtime.replica import (
    Replica,
    get_named_weights,
    set_named_weights,
    stage_state_parts,
    state_specs,
    weight_specs,
)
from testbed.runtime.splits import SplitTable
from testbed.runtime.steps import StepTickets, UnknownTicket
from testbed.runtime.wire import serde, serde_ps
from testbed.runtime.wire.proto import common_pb2, parameter_pb2, parameter_pb2_grpc
from testbed.runtime.wire.serde import Weights
from testbed.runtime.wire.serde_ps import Evaluation, ModelWeights, ParameterStatus
from testbed.runtime.wire.tensors import MessageValidationError, TensorSpec
from testbed.runtime.worker_metrics import WorkerMetrics
from testbed.training import state

_EVAL_BATCH = 1000


class Evaluator:
    """Test accuracy of a full set of stage weights, on the spec's evaluation samples."""

    def __init__(self, replica: Replica, data: Dataset, samples: int | None) -> None:
        self.models = [s.model for s in replica.stages]
        n = samples or len(data.y_test)
        self.x, self.y, self.synthetic = data.x_test[:n], data.y_test[:n], data.synthetic
        self._count = tf.function(lambda xb, yb: accuracy_count(forward(self.models, xb), yb))

    def __call__(self, stages: list[dict[str, np.ndarray]]) -> float:
        if self.synthetic:
            return math.nan  # generated data: no accuracy to report
        for model, tensors in zip(self.models, stages, strict=True):
            set_named_weights(model, tensors)
        n = len(self.y)
        correct = sum(
            int(self._count(self.x[i : i + _EVAL_BATCH], self.y[i : i + _EVAL_BATCH]))
            for i in range(0, n, _EVAL_BATCH)
        )
        return correct / n


def split_table(replica: Replica) -> SplitTable:
    """Epoch 0: the zoo model's layer units grouped as the replica's stages (KT sections: one
    unit per stage)."""
    from testbed.models import get_model

    stage_units = [s.units for s in replica.stages]
    stage_counts = [len(s.model.weights) for s in replica.stages]
    if replica.kt is not None:
        return splits.table_of(None, None, stage_units, stage_counts)
    model = get_model(replica.spec.model.name)
    return splits.table_of(model.unit_names(), model.weight_counts(), stage_units, stage_counts)


def grad_specs(model: tf.keras.Model) -> dict[str, TensorSpec]:
    """Names ('000', '001', ...) and specs of a stage's gradients, in trainable-variable order."""
    return {
        f"{k:03d}": TensorSpec(v.dtype, tuple(int(d) for d in v.shape))
        for k, v in enumerate(model.trainable_variables)
    }


class ParameterServer(parameter_pb2_grpc.ParameterServiceServicer):
    """Holds the newest weights per stage; evaluates each version complete for every stage.

    Stage workers push their weights at versions (pipeline steps); dp-async replicas pull the
    model with a step ticket (dynamic assignment: `steps`) and push gradients for it, which the
    server applies with its own optimizers (one version per applied step).
    """

    def __init__(
        self,
        replica: Replica,
        evaluator: Evaluator,
        metrics: WorkerMetrics,
        checkpoint_dir: Path,
        t0: float,
        states: CheckpointStore | None = None,
    ) -> None:
        self.replica, self.evaluate, self.metrics = replica, evaluator, metrics
        self.checkpoint_dir, self.t0, self.states = checkpoint_dir, t0, states
        self.state_every = replica.spec.training.checkpoint_interval(distributed=True)
        t, store = replica.spec.training, replica.spec.job.store
        self.eval_every, self.total, self.staleness_limit = (
            t.eval_every,
            t.iterations,
            store.target_staleness,
        )
        self.specs = [weight_specs(s.model) for s in replica.stages]
        self.table = split_table(replica)  # epochs of the split; a re-split adds one
        self._unit_specs = splits.named_units(self.table, self.specs)
        self.state_specs = [state_specs(replica, i) for i in range(len(replica.stages))]
        self._lock = threading.Lock()
        self.modules = CarriedModules(replica, len(self.table.counts))  # a re-split's SG modules
        self._versions: dict[int, dict[int, list[np.ndarray]]] = {}  # version -> unit -> arrays
        self._units: dict[int, tuple[int, list[np.ndarray]]] = {}  # unit -> newest (version, arrays)
        self._complete = 0
        self._evaluations: list[Evaluation] = []
        self._stale = 0
        self.tickets = StepTickets(t.iterations)
        self._appliers = make_appliers(replica)
        if get_mode(replica.spec.job.mode).layout == "replicas":  # dp-async: gradients come
            warm_appliers(self._appliers, replica)
        self.crashed = threading.Event()
        self.error: BaseException | None = None
        self._queue: queue.Queue[tuple[int, list[dict[str, np.ndarray]], float] | None] = (
            queue.Queue()
        )
        self._thread = threading.Thread(target=self._evaluate_loop, name="evaluate", daemon=True)
        self._thread.start()

    # --- stage workers ------------------------------------------------------------------------
    def PushWeights(  # noqa: N802 - name fixed by the generated servicer
        self, request: parameter_pb2.WeightSet, context: grpc.ServicerContext
    ) -> common_pb2.Ack:
        if request.HasField("sg_boundary"):
            return self._push_module(request, context)
        table = self.table
        try:  # the stage of the split epoch it names, validated against that stage's units
            specs = self._stage_specs(table, request.split_epoch, request.stage_id)
            w = serde_ps.weights_from_message(request, specs)
        except (MessageValidationError, splits.SplitError) as err:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        self.metrics.transfer(
            "received", f"stage{w.stage_id}", request.ByteSize(), serde.raw_nbytes(w)
        )
        units = table.to_units(w.split_epoch, w.stage_id, list(w.tensors.values()))
        with self._lock:
            for u, arrays in units.items():
                if self._units.get(u, (-1,))[0] <= w.version:
                    self._units[u] = (w.version, arrays)
            have = self._versions.setdefault(w.version, {})
            have.update(units)
            if len(have) == len(table.counts) and w.version > self._complete:
                self._complete = w.version
                stages = [self._named(table, 0, s, have) for s in range(table.stages)]
                self._queue.put((w.version, stages, self._since_t0()))
                for v in [v for v in self._versions if v <= w.version]:
                    del self._versions[v]
        return common_pb2.Ack(id=w.version)

    def _stage_specs(self, table: SplitTable, epoch: int, stage: int) -> dict[str, Any]:
        return splits.stage_named(table, epoch, stage, self._unit_specs)

    def _named(self, table: SplitTable, epoch: int, stage: int,
               units: dict[int, list[np.ndarray]]) -> dict[str, np.ndarray]:
        """Stage `stage` of `epoch` from unit arrays, named as that stage's worker names them."""
        names = self._stage_specs(table, epoch, stage)
        return dict(zip(names, table.from_units(epoch, stage, units), strict=True))

    def PullWeights(  # noqa: N802
        self, request: parameter_pb2.PullRequest, context: grpc.ServicerContext
    ) -> parameter_pb2.WeightSet:
        """A stage of a split epoch assembled from its units' newest weights, once every one of
        them is at min_version or newer (a re-split's receiver waits for its new units)."""
        if request.HasField("sg_boundary"):
            return self._pull_module(request, context)
        epoch, stage, table = request.split_epoch, request.stage_id, self.table
        try:
            wanted = table.units(epoch, stage)
        except splits.SplitError as err:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        with self._lock:
            have = {u: self._units[u] for u in wanted if u in self._units}
        versions = [v for v, _ in have.values()]
        if len(have) < len(wanted) or min(versions) < request.min_version:
            context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"stage {stage} of split epoch {epoch}: no weights at version >= "
                f"{request.min_version}",
            )
        tensors = self._named(table, epoch, stage, {u: a for u, (_, a) in have.items()})
        return serde_ps.weights_to_message(Weights(stage, min(versions), tensors, epoch))

    def _push_module(self, request: parameter_pb2.WeightSet,
                     context: grpc.ServicerContext) -> common_pb2.Ack:
        """A re-split's old owner hands on the SG module of a boundary that survives it."""
        try:
            w = serde_ps.weights_from_message(request, self.modules.specs(request.sg_boundary))
        except (MessageValidationError, splits.SplitError) as err:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        self.metrics.transfer("received", f"sg{request.sg_boundary}", request.ByteSize(),
                              serde.raw_nbytes(w))  # fmt: skip
        self.modules.put(request.sg_boundary, w.version, w.tensors)
        return common_pb2.Ack(id=w.version)

    def _pull_module(self, request: parameter_pb2.PullRequest,
                     context: grpc.ServicerContext) -> parameter_pb2.WeightSet:
        """The SG module of a boundary at min_version or newer (its new owner polls for it)."""
        unit = request.sg_boundary
        try:
            version, tensors = self.modules.get(unit)
        except splits.SplitError as err:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        if version < request.min_version:
            context.abort(grpc.StatusCode.NOT_FOUND, f"sg_boundary {unit}: no SG module at "
                          f"version >= {request.min_version}")  # fmt: skip
        return serde_ps.weights_to_message(Weights(0, version, tensors, sg_boundary=unit))

    def Resplit(  # noqa: N802
        self, request: common_pb2.SplitPlan, context: grpc.ServicerContext
    ) -> common_pb2.Ack:
        """Learn a new split epoch before the workers push or pull its stages."""
        try:
            plan = serde.split_from_message(request)
            with self._lock:
                self.table = self.table.with_epoch(plan.epoch, plan.stage_ends)
        except (MessageValidationError, splits.SplitError) as err:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        return common_pb2.Ack(id=plan.epoch)

    # --- checkpoints -----------------------------------------------------------------------------
    def PushState(  # noqa: N802
        self, request: parameter_pb2.WeightSet, context: grpc.ServicerContext
    ) -> common_pb2.Ack:
        if self.states is None or request.stage_id >= len(self.specs):
            context.abort(grpc.StatusCode.FAILED_PRECONDITION if self.states is None
                          else grpc.StatusCode.INVALID_ARGUMENT,
                          f"stage_id {request.stage_id}: no checkpoints taken here, or no such "
                          f"stage (expected 0..{len(self.specs) - 1})")  # fmt: skip
        try:
            w = serde_ps.weights_from_message(request, self.state_specs[request.stage_id])
        except MessageValidationError as err:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        self.metrics.transfer("received", f"stage{w.stage_id}", request.ByteSize(),
                              serde.raw_nbytes(w))  # fmt: skip
        if self.states.add(w.stage_id, w.version, dict(w.tensors)) is not None:  # type: ignore[union-attr]
            self.metrics.write("checkpoint", {"step": w.version, "wall_s": self._since_t0()})
        return common_pb2.Ack(id=w.version)

    def PullState(  # noqa: N802
        self, request: parameter_pb2.PullRequest, context: grpc.ServicerContext
    ) -> parameter_pb2.WeightSet:
        loaded = None if self.states is None else self.states.loaded
        if loaded is None or loaded.step < request.min_version:
            context.abort(grpc.StatusCode.NOT_FOUND, f"stage {request.stage_id}: no checkpoint "
                          f"at step >= {request.min_version} loaded")  # fmt: skip
        shard = self.states.shard(request.stage_id)  # type: ignore[union-attr]
        return serde_ps.weights_to_message(Weights(request.stage_id, loaded.step, shard))  # type: ignore[union-attr]

    def checkpoint_meta(self, version: int) -> dict[str, object]:
        """What a checkpoint at `version` holds besides the state: the clock, the evaluations."""
        with self._lock:
            evals = [asdict(e) for e in self._evaluations if e.step <= version]
        return {"wall_s": self._since_t0(), "ps_evaluations": evals}

    def resume(self, step: int) -> None:
        """Continue from the checkpoint at `step`: its evaluations, and (dp-async) its weights."""
        assert self.states is not None
        ckpt = self.states.load(step)
        with self._lock:
            self._evaluations = [Evaluation(**e) for e in ckpt.meta.get("ps_evaluations", [])]
            self._complete = step
            if self.replica.spec.job.mode == "dp-async":
                state.restore(stage_state_parts(self.replica, range(len(self.specs))), ckpt.arrays)
                self.tickets.resume(step)

    # --- dp-async replicas ----------------------------------------------------------------------
    def PushGradients(  # noqa: N802
        self, request: parameter_pb2.ModelWeights, context: grpc.ServicerContext
    ) -> common_pb2.Ack:
        try:
            grads = serde_ps.model_from_message(request, self.specs_trainable())
        except MessageValidationError as err:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        self.metrics.transfer(
            "received",
            "replica",
            request.ByteSize(),
            sum(serde.raw_nbytes(w) for w in grads.stages),
        )
        with self._lock:
            try:
                snapshot, version = self._apply_if_fresh(grads)
            except UnknownTicket as err:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
            full = self._capture_if_due(version)
        if snapshot is not None:
            self._queue.put((version, snapshot, self._since_t0()))
        for i, shard in (full or {}).items():
            self.states.add(i, version, shard)  # type: ignore[union-attr]
        return common_pb2.Ack(id=version)

    def _capture_if_due(self, version: int) -> dict[int, dict[str, np.ndarray]] | None:
        """dp-async: the server's own full state at a checkpoint version, by stage (lock held)."""
        if self.states is None or not self.state_every or not version:
            return None
        if version % self.state_every or version in self.states.written:
            return None
        parts = stage_state_parts(self.replica, range(len(self.specs)))
        return {i: state.capture({i: p}) for i, p in parts.items()}

    def _apply_if_fresh(
        self, grads: ModelWeights
    ) -> tuple[list[dict[str, np.ndarray]] | None, int]:
        """Apply the ticket's gradients unless stale (the step is then handed out again);
        snapshot the weights when due for evaluation."""
        staleness = self.tickets.applied - grads.version
        fresh = staleness <= self.staleness_limit
        self.tickets.settle(grads.ticket, applied=fresh)  # raises for an unknown ticket
        if not fresh:
            self._stale += 1
            return None, self.tickets.applied
        self.metrics.staleness(staleness)
        self._apply(grads)
        applied = self.tickets.applied
        self.metrics.step_done(applied, self.replica.spec.training.log_every)
        due = applied % self.eval_every == 0 or applied == self.total
        return (self._snapshot() if due else None), applied

    def specs_trainable(self) -> list[dict[str, TensorSpec]]:
        return [grad_specs(s.model) for s in self.replica.stages]

    def _apply(self, grads: ModelWeights) -> None:
        for apply, w in zip(self._appliers, grads.stages, strict=True):
            apply([tf.convert_to_tensor(t) for t in w.tensors.values()])

    def _snapshot(self) -> list[dict[str, np.ndarray]]:
        return [get_named_weights(s.model) for s in self.replica.stages]

    def PullModel(  # noqa: N802
        self, request: common_pb2.Empty, context: grpc.ServicerContext
    ) -> parameter_pb2.ModelWeights:
        """The model with the next free step. Without a step it carries no weights: the rest are
        in flight elsewhere (ask again later), or all S are applied (version >= S: stop). A
        replica never uses weights it has no step for, so none cross its link for nothing."""
        with self._lock:
            version, ticket = self.tickets.applied, self.tickets.take()
            snapshot = self._snapshot() if ticket else []
        stages = tuple(Weights(i, version, t) for i, t in enumerate(snapshot))
        return serde_ps.model_to_message(ModelWeights(version, stages, ticket))

    # --- evaluation -----------------------------------------------------------------------------
    def _evaluate_loop(self) -> None:
        try:
            while (item := self._queue.get()) is not None:
                self._evaluate(*item)
        except BaseException as err:  # noqa: BLE001 - the main thread re-raises it
            self.error = err
            self.crashed.set()

    def _since_t0(self) -> float:
        return time.time() - self.t0

    def _evaluate(self, version: int, stages: list[dict[str, np.ndarray]], ready: float) -> None:
        acc = self.evaluate(stages)
        wall = self._since_t0()
        save_checkpoint(self.checkpoint_dir, version, stages)
        with self._lock:
            self._evaluations.append(Evaluation(version, acc, wall, ready))
        fields = {"step": version, "test_acc": acc, "wall_s": wall, "ready_s": ready}
        if math.isnan(acc):  # synthetic data: an evaluation point without an accuracy
            del fields["test_acc"]
        self.metrics.write("eval", fields)

    def Status(  # noqa: N802
        self, request: common_pb2.Empty, context: grpc.ServicerContext
    ) -> parameter_pb2.ParameterStatus:
        with self._lock:
            version = max(self._complete, self.tickets.applied)
            status = ParameterStatus(version, tuple(self._evaluations), self._stale)
        return serde_ps.status_to_message(status)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=60)

