"""kt-sections loops: the teacher streams section activations; student sections learn from them.

The teacher worker reads the data, runs its frozen sections once per batch and sends student
section i the teacher's input and output of section i (the logits for the last one) with the
labels. A student worker steps each section it holds with the pure `section_step` /
`final_section_step` of algorithms.kt: sections never exchange anything, so on different devices
they train at the same time (KnowledgeNet's decoupled form).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from testbed.algorithms.bp import accuracy_count
from testbed.algorithms.kt import final_section_step, section_step, teacher_outputs
from testbed.runtime.loops import StageLoop
from testbed.runtime.stage_io import StageIO
from testbed.runtime.wire.serde import Activation
from testbed.training.kt_trainables import kt_loss


class TeacherStream(StageLoop):
    """The teacher worker: one batch of data in, one message per student section out."""

    def __init__(self, io: StageIO) -> None:
        self.io = io
        teacher = io.replica.kt.teacher
        self.n = len(teacher)
        if sorted(io.sections) != list(range(self.n)):
            raise ValueError(f"teacher worker: peers hold sections {sorted(io.sections)}; "
                             f"expected every one of the {self.n} student sections")
        self.outputs = tf.function(lambda x: teacher_outputs(teacher, x))

    def run(self, total: int) -> int:
        node, log_every = self.io.node, self.io.cfg.spec.training.log_every
        step = 0
        while step < total and not node.stopped.is_set():
            step += 1
            x, y = self.io.batch()
            with node.metrics.timer("compute_s"):
                outs = [o.numpy() for o in self.outputs(tf.convert_to_tensor(x))]
            for i in range(self.n):
                self.io.send_section(Activation(step, step, outs[i], y, step == total,
                                                outs[i + 1], i))
            node.step = step
            node.metrics.step_done(step, log_every)
        return step


Step = Callable[[tf.Tensor, tf.Tensor, tf.Tensor], Any]


class KtSections(StageLoop):
    """A student worker: steps each held section on the teacher's activations as they arrive."""

    def __init__(self, io: StageIO) -> None:
        self.io = io
        self.ids = io.node.stage_ids
        self.n = len(io.replica.stages)
        self.steps = {i: self._compile(i) for i in self.ids}
        self.section_losses: list[float] = []

    def _compile(self, i: int) -> Step:
        student, loss = self.io.replica.kt.student, kt_loss(self.io.cfg.spec)
        section, opt = student.sections[i], student.optimizers[i]
        if i == self.n - 1:
            def last(h: tf.Tensor, y: tf.Tensor, t: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
                value, logits = final_section_step(section, opt, h, y, t, loss)
                return value, accuracy_count(logits, y)
            return tf.function(last)
        adapter = student.adapters[i]
        return tf.function(lambda h, y, t: section_step(section, adapter, opt, h, t, loss)[0])

    def _step(self, act: Activation) -> dict[str, float]:
        assert act.target is not None  # the servicer requires it in kt-sections
        with self.io.node.metrics.timer("compute_s"):
            out = self.steps[act.stage_id](tf.convert_to_tensor(act.h),
                                           tf.convert_to_tensor(act.labels),
                                           tf.convert_to_tensor(act.target))
        if act.stage_id < self.n - 1:
            self.section_losses.append(float(out))
            return {}
        value, correct = out
        return {"loss": float(value), "train_acc": int(correct) / len(act.labels)}

    def run(self, total: int) -> int:
        """Until the teacher's final batch; returns the last batch id (the weights' version)."""
        node, log_every = self.io.node, self.io.cfg.spec.training.log_every
        step, extra = 0, {}
        while not node.stopped.is_set():
            act = self.io.next_input()
            if act is None:
                break
            extra.update(self._step(act))
            if act.stage_id != self.ids[-1]:
                continue  # the batch is done once its last held section has stepped
            step = node.step = act.batch_id
            if self.section_losses and step % log_every == 0:
                extra["section_loss"] = float(np.mean(self.section_losses))
                self.section_losses.clear()
            logged = node.metrics.step_done(step, log_every, **extra)
            if logged and self.ids[-1] == self.n - 1:
                node.metrics.train_point(step, {**extra, "it_s": logged["it_s"]})
            extra = {}
            self.io.maybe_push(step)
            if act.final:
                break
        return step
