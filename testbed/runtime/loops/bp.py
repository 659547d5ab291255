"""Backprop stage loops: model-parallel with one batch in flight, GPipe micro-batches, or local."""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from testbed.algorithms.bp import (
    accuracy_count,
    add_grads,
    apply_stage_grads,
    bp_step,
    forward,
    last_stage_grads,
    stage_grads,
)
from testbed.modes import get_mode
from testbed.runtime.loops import StageLoop
from testbed.runtime.stage_io import StageIO
from testbed.runtime.wire.serde import Activation, Gradient


class BPStage(StageLoop):
    """One (composite) stage of model-parallel backprop with M micro-batches per optimizer step.

    Per step: every micro-batch forward (fill), then every backward (drain), then one update
    of the summed gradients: GPipe's schedule; M = 1 is plain model-parallel BP (bp-sync).
    """

    def __init__(self, io: StageIO) -> None:
        job = io.cfg.spec.job
        micro_batches = get_mode(job.mode).micro_batches(job)
        self.io, self.m = io, micro_batches
        ids = io.node.stage_ids
        n = len(io.replica.stages)
        self.first, self.last = ids[0] == 0, ids[-1] == n - 1
        models, opts = io.replica.models(ids), io.replica.opts(ids)
        scale, first = 1.0 / micro_batches, self.first

        def last_fn(h: tf.Tensor, y: tf.Tensor) -> tuple[Any, ...]:
            loss, logits, grads, g_in = last_stage_grads(models, h, y, scale)
            return loss, accuracy_count(logits, y), grads, g_in

        self.fwd = tf.function(lambda h: forward(models, h, training=True))
        self.grads_fn = tf.function(lambda h, g: stage_grads(models, h, g, input_grad=not first))
        self.last_fn = tf.function(last_fn)
        self.apply_fn = tf.function(lambda g: apply_stage_grads(models, opts, g))

    def _micro_inputs(self, step: int) -> list[Activation]:
        """The M micro-batches of this step: split from the dataset, or received from upstream."""
        if not self.first:
            acts = [self.io.next_input() for _ in range(self.m)]
            if any(a is None for a in acts):
                raise RuntimeError("activation store closed in the middle of a step")
            return acts  # type: ignore[return-value]
        x, y = self.io.batch()
        return [
            Activation((step - 1) * self.m + k, step, xs, ys)
            for k, (xs, ys) in enumerate(zip(np.split(x, self.m), np.split(y, self.m), strict=True))
        ]

    def _forward_phase(self, step: int) -> tuple[dict[int, tf.Tensor], Any, dict[str, float]]:
        kept: dict[int, tf.Tensor] = {}
        total, losses, correct, seen = None, [], 0, 0
        m = self.io.node.metrics
        for act in self._micro_inputs(step):
            h = tf.convert_to_tensor(act.h)
            if self.last:
                with m.timer("compute_s"):
                    loss, ok, grads, g_in = self.last_fn(h, act.labels)
                    total = add_grads(total, grads)
                    g_np = g_in.numpy()
                losses.append(float(loss))
                correct, seen = correct + int(ok), seen + len(act.labels)
                if not self.first:
                    self.io.send_backward(Gradient(act.batch_id, step, g_np))
                continue
            with m.timer("compute_s"):
                h_out = self.fwd(h).numpy()
            kept[act.batch_id] = h
            self.io.send_forward(Activation(act.batch_id, step, h_out, act.labels))
        extra = {"loss": float(np.mean(losses)), "train_acc": correct / seen} if self.last else {}
        return kept, total, extra

    def _backward_phase(self, step: int, kept: dict[int, tf.Tensor]) -> Any:
        total = None
        m = self.io.node.metrics
        for _ in range(len(kept)):
            grad = self.io.next_gradient()
            if grad is None:
                raise RuntimeError("gradient buffer closed in the middle of a step")
            with m.timer("compute_s"):
                grads, g_in = self.grads_fn(kept.pop(grad.batch_id), tf.convert_to_tensor(grad.g))
                total = add_grads(total, grads)
                g_np = None if g_in is None else g_in.numpy()
            if g_np is not None:
                self.io.send_backward(Gradient(grad.batch_id, step, g_np))
        return total

    def run(self, total_steps: int) -> int:
        node, t = self.io.node, self.io.cfg.spec.training
        for step in range(self.io.start_step + 1, total_steps + 1):
            if node.stopped.is_set():
                return step - 1
            kept, grads, extra = self._forward_phase(step)
            if not self.last:
                grads = self._backward_phase(step, kept)
            with node.metrics.timer("compute_s"):
                self.apply_fn(grads)
            node.step = step
            logged = node.metrics.step_done(step, t.log_every, **extra)
            if self.last and logged:
                self.io.node.metrics.train_point(step, {**extra, "it_s": logged["it_s"]})
            self.io.maybe_push(step)
        return total_steps


class LocalBP(StageLoop):
    """The whole model on one worker, stepped with bp_step (the seed paper's baseline)."""

    def __init__(self, io: StageIO) -> None:
        self.io = io
        models, opts = io.replica.models(io.node.stage_ids), io.replica.opts(io.node.stage_ids)

        def step(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            loss, logits = bp_step(models, opts, x, y)
            return loss, accuracy_count(logits, y)

        self.step_fn = tf.function(step)

    def run(self, total_steps: int) -> int:
        node, t = self.io.node, self.io.cfg.spec.training
        for step in range(self.io.start_step + 1, total_steps + 1):
            if node.stopped.is_set():
                return step - 1
            x, y = self.io.batch()
            with node.metrics.timer("compute_s"):
                loss, correct = self.step_fn(x, y)
                extra = {"loss": float(loss), "train_acc": int(correct) / len(y)}
            node.step = step
            logged = node.metrics.step_done(step, t.log_every, **extra)
            if logged:
                self.io.node.metrics.train_point(step, {**extra, "it_s": logged["it_s"]})
            self.io.maybe_push(step)
        return total_steps
