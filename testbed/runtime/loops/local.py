"""The local-loss stage loop: forward, update from the stage's own head, send forward, never wait."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from testbed.algorithms.bp import accuracy_count
from testbed.algorithms.local import final_stage_step, local_stage_step
from testbed.runtime.loops import StageLoop
from testbed.runtime.stage_io import StageIO
from testbed.runtime.wire.serde import Activation

Step = Callable[[tf.Tensor, tf.Tensor], Any]


class LocalStage(StageLoop):
    """Consecutive stages of a local-loss pipeline on one worker. Each held stage before the
    model's last trains on its auxiliary head; the one holding the logits on the true loss. The
    output goes downstream and nothing comes back: this worker sends no backward message."""

    def __init__(self, io: StageIO) -> None:
        self.io = io
        self.ids, n = io.node.stage_ids, len(io.replica.stages)
        self.first, self.last = self.ids[0] == 0, self.ids[-1] == n - 1
        self.steps = [self._compile(i, n) for i in self.ids]
        self.local_losses: list[float] = []  # head losses since the last logged step
        self.trace()

    def _compile(self, i: int, n: int) -> Step:
        r = self.io.replica
        model, opt = r.stages[i].model, r.optimizers[i]
        if i == n - 1:
            def last(h: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
                loss, logits = final_stage_step([model], [opt], h, y)
                return loss, accuracy_count(logits, y)
            return tf.function(last)
        head, head_opt = r.heads[i], r.head_optimizers[i]
        return tf.function(lambda h, y: local_stage_step([model], head, [opt], head_opt, h, y))

    def trace(self) -> None:
        """Trace every step before training (a mid-run trace would stall the pipeline)."""
        b = self.io.cfg.spec.training.batch_size
        labels = tf.TensorSpec((b,), tf.int64)
        for i, step in zip(self.ids, self.steps, strict=True):
            shape = self.io.replica.stages[i].input_shape
            step.get_concrete_function(tf.TensorSpec((b, *shape), tf.float32), labels)  # type: ignore[attr-defined]

    def _input(self, step: int, total: int) -> Activation | None:
        if self.first:
            x, y = self.io.batch()
            return Activation(step, step, x, y, final=step == total)
        return self.io.next_input()

    def _train(self, act: Activation) -> tuple[np.ndarray | None, dict[str, float]]:
        """Step every held stage on this batch; (output for downstream or None, loss fields)."""
        h, y = tf.convert_to_tensor(act.h), tf.convert_to_tensor(act.labels)
        with self.io.node.metrics.timer("compute_s"):
            for step in self.steps[:-1] if self.last else self.steps:
                h, loss = step(h, y)
                self.local_losses.append(float(loss))
            if not self.last:
                return h.numpy(), {}
            loss, correct = self.steps[-1](h, y)
        return None, {"loss": float(loss), "train_acc": int(correct) / len(act.labels)}

    def run(self, total: int) -> int:
        """Train until the final batch; returns the pipeline version (last batch id) reached."""
        node, t = self.io.node, self.io.cfg.spec.training
        step = batch_id = self.io.start_step  # a restarted worker goes on from its checkpoint
        while not node.stopped.is_set():
            act = self._input(step + 1, total)
            if act is None:
                break
            step, batch_id = step + 1, act.batch_id
            h_out, extra = self._train(act)
            if h_out is not None:
                self.io.send_forward(Activation(act.batch_id, step, h_out, act.labels, act.final))
            if self.local_losses and step % t.log_every == 0:
                extra["local_loss"] = sum(self.local_losses) / len(self.local_losses)
                self.local_losses.clear()
            node.step = step
            logged = node.metrics.step_done(step, t.log_every, **extra)
            if self.last and logged:
                node.metrics.train_point(step, {**extra, "it_s": logged["it_s"]})
            self.io.maybe_push(batch_id)
            if act.final:
                break
        return batch_id
