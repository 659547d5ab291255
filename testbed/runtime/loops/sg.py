"""The decoupled (SG) stage loop: forward, update at once from the SG module, learn targets late."""

from __future__ import annotations

import time
from typing import Any

import tensorflow as tf

from testbed.algorithms.bp import accuracy_count
from testbed.algorithms.sg import sends_target, sg_last_stage_step, sg_module_step, sg_stage_step
from testbed.runtime.loops import StageLoop
from testbed.runtime.replica import input_spec, output_spec, weight_specs
from testbed.runtime.resplit import (
    module_moves,
    module_state,
    module_state_specs,
    regroup,
    stage_ends,
    stages_for,
)
from testbed.runtime.stage_io import StageIO
from testbed.runtime.store import PendingTargets
from testbed.runtime.wire.serde import Activation, Gradient, Resplit

_RESPLIT_WAIT_S = 300.0  # a drain waits this long for its neighbours and the PS at most
_SETTLE_S = 60.0  # after its final batch a stage waits this long at most for targets owed
_POLL_S = 0.1


class SGStage(StageLoop):
    """One stage of an SG pipeline; it never waits for a backward message.

    Targets go upstream for batch 1 and every algorithm.sg.target_every-th batch after it
    (sends_target); the module learns from those, and other batches skip computing one.
    After its final batch a stage learns the targets still owed to it before it ends (_settle).
    """

    def __init__(self, io: StageIO) -> None:
        self.io = io
        spec, node = io.cfg.spec, io.node
        if len(node.stage_ids) != 1:
            raise ValueError(
                f"job.mode 'sg': worker {io.cfg.name!r} holds stages {list(node.stage_ids)}; "
                "expected exactly one stage per worker"
            )
        self.index = node.stage_ids[0]
        self.n_stages = len(io.replica.stages)
        self.first, self.last = self.index == 0, self.index == self.n_stages - 1
        self.classes = io.replica.num_classes
        self.every = spec.algorithm.sg.target_every
        self.pending: PendingTargets[tuple[tf.Tensor, tf.Tensor]] = PendingTargets(
            spec.job.store.target_staleness
        )
        self.sg_losses: list[float] = []  # SG regression losses since the last logged step
        self.warmup, self.warmup_total = 0, 0  # steps left of / in a warm-up after a re-split
        node.metrics.gauges["pending_targets"] = lambda: len(self.pending)
        node.metrics.gauges["targets_expired"] = lambda: self.pending.expired
        self._build_steps()
        self.trace()
        self._traced = self._tracing_count()
        # 0 when every call reused its pre-traced graph (nothing traced again mid-run)
        node.metrics.gauges["retraces"] = lambda: self._tracing_count() - self._traced
        self.resplit: Resplit | None = None  # the re-split being drained towards

    def _build_steps(self) -> None:
        r, i = self.io.replica, self.index
        model, opt = r.stages[i].model, r.optimizers[i]
        if self.last:

            def last(h: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
                loss, logits, target = sg_last_stage_step(model, opt, h, y)
                return loss, accuracy_count(logits, y), target

            self.last_step = tf.function(last)
            self._functions = [self.last_step]
            return
        sg, sg_opt = r.sgs[i], r.sg_optimizers[i]
        scale, first = self.io.cfg.spec.algorithm.sg.grad_scale, self.first
        self.stage_step = tf.function(
            lambda h, y1h: sg_stage_step(model, sg, opt, h, y1h, scale, input_grad=not first)
        )
        self.quiet_step = self.stage_step  # the update without a target to send upstream
        if self.every > 1 and not first:
            self.quiet_step = tf.function(
                lambda h, y1h: sg_stage_step(model, sg, opt, h, y1h, scale, input_grad=False)
            )
        self.module_step = tf.function(lambda h, y1h, t: sg_module_step(sg, sg_opt, h, y1h, t))
        self._functions = list({id(f): f for f in (
            self.stage_step, self.quiet_step, self.module_step)}.values())

    def _tracing_count(self) -> int:
        return sum(f.experimental_get_tracing_count() for f in self._functions)

    def trace(self) -> None:
        """Trace every step function before training starts: otherwise each traces at its first
        call (the SG module's only when the first target returns, mid-run), stalling the
        pipeline inside the measured window."""
        stage, b = self.io.replica.stages[self.index], self.io.cfg.spec.training.batch_size
        h_in = tf.TensorSpec((b, *stage.input_shape), tf.float32)
        if self.last:
            self.last_step.get_concrete_function(h_in, tf.TensorSpec((b,), tf.int64))
            return
        y1h, h_out = tf.TensorSpec((b, self.classes)), tf.TensorSpec((b, *stage.output_shape))
        self.stage_step.get_concrete_function(h_in, y1h)
        self.quiet_step.get_concrete_function(h_in, y1h)
        self.module_step.get_concrete_function(h_out, y1h, h_out)

    def _input(self, step: int, total: int) -> Activation | None:
        if self.first:
            x, y = self.io.batch()
            pending = self._pending_resplit()  # its next batch is the last of the old split
            return Activation(step, step, x, y, final=step == total, drain=pending is not None)
        return self.io.next_input()

    def _pending_resplit(self) -> Resplit | None:
        if self.resplit is None and not self.io.node.resplits.empty():
            self.resplit = self.io.node.resplits.get()
        return self.resplit

    def _learn_targets(self, step: int) -> None:
        """Regress the SG module onto every target that has arrived (never waits for one)."""
        node = self.io.node
        for grad in node.grads.drain() if node.grads is not None else []:
            self._learn(grad, step)

    def _learn(self, grad: Gradient, step: int) -> None:
        """Regress the SG module onto one target, if its batch still waits for it."""
        metrics = self.io.node.metrics
        found = self.pending.match(grad.batch_id, step)
        if found is None:
            metrics.add("targets_stale")
            return
        staleness, (h, y1h) = found
        metrics.staleness(staleness)
        with metrics.timer("compute_s"), metrics.timer("sg_module_s"):
            self.sg_losses.append(float(self.module_step(h, y1h, tf.convert_to_tensor(grad.g))))

    def _settle(self, step: int) -> None:
        """After the final batch: learn every target still owed, for _SETTLE_S at most."""
        node, deadline = self.io.node, time.monotonic() + _SETTLE_S
        assert node.grads is not None
        while self.pending and not node.stopped.is_set() and time.monotonic() < deadline:
            grad = node.grads.get(timeout=_POLL_S)
            if grad is not None:
                self._learn(grad, step)

    def _step(self, act: Activation, step: int) -> dict[str, float]:
        y1h = tf.one_hot(tf.convert_to_tensor(act.labels, tf.int32), self.classes)
        m = self.io.node.metrics
        learn = sends_target(act.batch_id, self.every) or act.drain  # a drain waits for it
        self._warm_up()
        with m.timer("compute_s"):
            stage_step = self.stage_step if learn else self.quiet_step
            h_out, delta = stage_step(tf.convert_to_tensor(act.h), y1h)
            h_np = h_out.numpy()
            delta_np = None if delta is None else delta.numpy()
        if learn:  # its target will come back
            self.pending.add(act.batch_id, step, (h_out, y1h))
        self.io.send_forward(Activation(act.batch_id, step, h_np, act.labels, act.final,
                                        drain=act.drain))
        delta = None if delta_np is None else Gradient(act.batch_id, step, delta_np)
        if act.drain:  # upstream must not send the new split's shapes before this one's ready
            self._drain(act.batch_id, step, delta)
        elif delta is not None:
            self.io.send_backward(delta)
        return {}

    def _last(self, act: Activation, step: int) -> dict[str, float]:
        self._warm_up()
        with self.io.node.metrics.timer("compute_s"):
            h, y = tf.convert_to_tensor(act.h), tf.convert_to_tensor(act.labels)
            loss, correct, target = self.last_step(h, y)
            target_np = target.numpy()
        target_msg = Gradient(act.batch_id, step, target_np)
        if act.drain:  # the stage above waits for this target before it drains
            self._drain(act.batch_id, step, target_msg)
        elif sends_target(act.batch_id, self.every):
            self.io.send_backward(target_msg)
        return {"loss": float(loss), "train_acc": int(correct) / len(act.labels)}

    def _warm_up(self) -> None:
        """The learning rate of a stage whose units moved: 0 for the first half of the warm-up
        (its new SG module and the fresh optimizer's moments learn), then a linear ramp to the
        spec's over the second half. Called once per step. It delays the accuracy dip that
        fresh SG modules cause rather than preventing it (docs/partition.md, bench sg-reset)."""
        if not self.warmup:
            return
        ramp = self.warmup_total - self.warmup_total // 2
        self.warmup -= 1
        done = ramp - min(self.warmup, ramp)  # steps of the ramp taken, after this one
        lr = self.io.cfg.spec.training.lr
        self.io.replica.optimizers[self.index].learning_rate = lr * done / ramp

    # --- re-split ---------------------------------------------------------------------------
    def _drain(self, batch_id: int, step: int, held: Gradient | None) -> None:
        """After the last batch of the old split: drain, move units through the PS, rebuild."""
        io, node = self.io, self.io.node
        plan = self.resplit or node.resplits.get(timeout=_RESPLIT_WAIT_S)
        started = time.perf_counter()
        if not self.last:
            self._await_target(batch_id, step)  # nothing of the old output shape is coming any more
        io.flush_sends()
        r, i = io.replica, self.index
        hand = module_moves(stage_ends(r), plan.stage_ends, i)
        if hand.push is not None:  # its boundary survives on another stage: the module goes there
            io.push_module(hand.push, batch_id, module_state(r.sgs[i], r.sg_optimizers[i]))
        io.push_now(batch_id)  # the old owner's units (and module), at the drain batch
        stages = stages_for(io.replica, plan.stage_ends)
        new = stages[self.index]
        if not self.first:
            node.in_spec = input_spec(new)  # every old-shaped input has been stepped
        if held is not None:
            io.send_backward(held)
            io.flush_sends()
        if not self.last:
            node.grad_spec = output_spec(new)
        drained = time.perf_counter()
        pulled = io.pull_stage(self.index, batch_id, plan.epoch, weight_specs(new.model),
                               _RESPLIT_WAIT_S)
        carried = None
        if hand.pull is not None:  # the boundary it now ends at was another stage's
            specs = module_state_specs(io.cfg.spec, new.output_shape, r.num_classes)
            carried = io.pull_stage(self.index, batch_id, plan.epoch, specs, _RESPLIT_WAIT_S,
                                    sg_boundary=hand.pull).tensors
        moved = regroup(io.replica, self.index, stages, pulled.tensors, carried)
        io.split_epoch, self.resplit = plan.epoch, None
        if moved.units:
            cfg = io.cfg.spec.job.resplit
            self.warmup = self.warmup_total = cfg.warmup_steps if cfg is not None else 0
            self._warm_up()
        self.pending.clear()
        self._build_steps()
        self.trace()
        self._traced = self._tracing_count()
        done = time.perf_counter()
        node.metrics.add("resplits")
        node.metrics.add("resplit_s", done - started)
        node.metrics.write("resplit", {
            "epoch": plan.epoch, "batch_id": batch_id, "units": len(new.units),
            "drain_s": drained - started, "rebuild_s": done - drained,
            "new_sg_module": float(moved.new_sg), "carried_sg_module": float(moved.carried_sg),
        })

    def _await_target(self, batch_id: int, step: int) -> None:
        """Learn every SG target that arrives until the one for `batch_id` (the drain batch)."""
        node = self.io.node
        assert node.grads is not None
        while not node.stopped.is_set():
            grad = node.grads.get(timeout=_POLL_S)
            if grad is None:
                continue
            self._learn(grad, step)
            if grad.batch_id == batch_id:
                return

    def run(self, total: int) -> int:
        """Train until the final batch; returns the pipeline version (last batch id) reached."""
        node, t = self.io.node, self.io.cfg.spec.training
        step = batch_id = self.io.start_step
        while not node.stopped.is_set():
            if not self.last:
                self._learn_targets(step)
            act = self._input(step + 1, total)
            if act is None:
                break
            step, batch_id = step + 1, act.batch_id
            extra: dict[str, Any] = self._last(act, step) if self.last else self._step(act, step)
            if act.final and not self.last:
                self._settle(step)
            if self.sg_losses and step % t.log_every == 0:
                extra["sg_loss"] = sum(self.sg_losses) / len(self.sg_losses)
                self.sg_losses.clear()
            node.step = step
            logged = node.metrics.step_done(step, t.log_every, **extra)
            if self.last and logged:
                self.io.node.metrics.train_point(step, {**extra, "it_s": logged["it_s"]})
            self.io.maybe_push(batch_id)
            if act.final:
                break
        return batch_id
