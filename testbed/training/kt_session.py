"""What one in-process KT run trains: student sections, adapters, optimizers, the compiled step."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import keras
import tensorflow as tf

from testbed.algorithms.aux_head import AuxHead
from testbed.algorithms.bp import accuracy_count, bp_step, forward
from testbed.algorithms.kt import (
    kd_step,
    progressive_section_step,
    ramped_share,
    representation_loss,
    section_kt_step,
    section_variables,
    teacher_outputs,
)
from testbed.algorithms.kt_adapter import chain, fold_student
from testbed.data import Dataset
from testbed.spec.experiment import Spec
from testbed.training.kt_phase import Phase, accuracy_fn, eval_split
from testbed.training.kt_trainables import build_student, kt_loss, shape_of
from testbed.training.session import make_optimizer

Step = tuple[tf.Tensor, tf.Tensor, tf.Tensor]


@dataclass
class KtSession:
    """The student being taught, the frozen teacher sections and one optimizer per section
    (updating the section, its adapter and its auxiliary head, if any)."""

    spec: Spec
    data: Dataset
    teacher: list[keras.Model]
    sections: list[keras.Sequential]
    optimizers: list[keras.optimizers.Optimizer]
    adapters: list[keras.Sequential] = field(default_factory=list)
    heads: list[AuxHead] = field(default_factory=list)

    @classmethod
    def build(cls, spec: Spec, data: Dataset, teacher: list[keras.Model]) -> KtSession:
        student = build_student(spec, teacher, tuple(data.input_shape))
        heads = []
        if student.adapters and spec.algorithm.kt.aux_head_weight > 0:
            heads = [AuxHead(shape_of(a, "output_shape"), data.num_classes, depth=0)
                     for a in student.adapters]  # linear, after DGL's pooling
        return cls(spec, data, teacher, student.sections, student.optimizers, student.adapters,
                   heads)

    @property
    def method(self) -> str:
        return self.spec.algorithm.kt.method

    def assembled(self) -> list[keras.Model]:
        """The student end to end (adapters in place for section-kt; equal to the folded one)."""
        return chain(self.sections, self.adapters) if self.adapters else list(self.sections)

    def student(self) -> list[keras.Model]:
        """The deployable student: adapters folded into the next section's first layer."""
        return fold_student(self.sections, self.adapters) if self.adapters else list(self.sections)

    def compile_step(self) -> Any:
        """The per-batch step as one tf.function: (x, y) -> (loss, correct, mean section loss)."""
        models, opts, teacher = self.sections, self.optimizers, self.teacher
        loss = kt_loss(self.spec)
        if self.method == "independent":
            def step(x: tf.Tensor, y: tf.Tensor) -> Step:
                value, logits = bp_step(models, opts, x, y)
                return value, accuracy_count(logits, y), tf.constant(0.0)
        elif self.method == "kd":
            def step(x: tf.Tensor, y: tf.Tensor) -> Step:
                value, logits = kd_step(models, opts, x, y, forward(teacher, x), loss)
                return value, accuracy_count(logits, y), tf.constant(0.0)
        else:
            adapters = self.adapters
            kt = self.spec.algorithm.kt
            share = {"teacher": 0.0, "student": 1.0, "mixed": kt.student_share}[kt.section_input]
            ramp = kt.student_share_ramp if kt.section_input == "mixed" else 0
            heads, weight = self.heads, kt.aux_head_weight

            def step(x: tf.Tensor, y: tf.Tensor) -> Step:
                outs = teacher_outputs(teacher, x)
                now = ramped_share(opts[-1].iterations, share, ramp)  # the last section's steps
                value, logits, rep = section_kt_step(models, adapters, opts, outs, y, loss, now,
                                                     heads, weight)
                return value, accuracy_count(logits, y), tf.reduce_mean(rep)
        return tf.function(step)

    def compile_section_step(self, i: int) -> Any:
        """Progressive section-kt's step of section i alone, as one tf.function: (x, y) ->
        (its loss, correct answers of the student as assembled so far, its representation loss
        (0 for the last section))."""
        models, adapters, opt = self.sections, self.adapters, self.optimizers[i]
        teacher, heads, loss = self.teacher, self.heads, kt_loss(self.spec)
        weight, last = self.spec.algorithm.kt.aux_head_weight, i == len(models) - 1

        def step(x: tf.Tensor, y: tf.Tensor) -> Step:
            outs = teacher_outputs(teacher, x)
            value, logits = progressive_section_step(i, models, adapters, opt, outs, y, loss,
                                                     heads, weight)
            return value, accuracy_count(logits, y), tf.constant(0.0) if last else value
        return tf.function(step)

    def evaluator(self) -> Any:
        return accuracy_fn(self.assembled(), *eval_split(self.spec, self.data))

    def section_losses(self, samples: int = 1000) -> list[float]:
        """Each section's representation loss on the first test samples (section-kt only)."""
        if not self.adapters:
            return []
        x = self.data.x_test[:samples]
        outs = teacher_outputs(self.teacher, tf.constant(x))
        kind = self.spec.algorithm.kt.section_loss
        return [float(representation_loss(a(s(outs[i])), outs[i + 1], kind))
                for i, (s, a) in enumerate(zip(self.sections, self.adapters, strict=False))]

    def adapter_params(self) -> list[int]:
        return [int(a.count_params()) for a in self.adapters]

    def head_params(self) -> list[int]:
        return [int(h.count_params()) for h in self.heads]

    def trainable_params(self) -> list[int]:
        """Parameters each section's optimizer updates during training (adapters and auxiliary
        heads included)."""
        n = len(self.sections)
        adapters = [*self.adapters, *[None] * (n - len(self.adapters))]
        heads = [*self.heads, *[None] * (n - len(self.heads))]
        return [sum(int(tf.size(v)) for v in section_variables(s, a, h))
                for s, a, h in zip(self.sections, adapters, heads, strict=True)]


def finetune_phase(spec: Spec, data: Dataset, teacher: list[keras.Model],
                   student: list[keras.Model]) -> Phase:
    """Joint end-to-end steps of the assembled student on the KD loss, for finetune_steps."""
    kt, t = spec.algorithm.kt, spec.training
    steps = kt.finetune_steps
    fspec = spec.model_copy(update={"training": t.model_copy(update={
        "iterations": steps, "eval_every": min(t.eval_every, steps),
        "log_every": min(t.log_every, steps)})})
    opts = [make_optimizer(t.optimizer, t.lr) for _ in student]
    loss = kt_loss(spec)

    def compile_step() -> Any:
        def step(x: tf.Tensor, y: tf.Tensor) -> Step:
            value, logits = kd_step(student, opts, x, y, forward(teacher, x), loss)
            return value, accuracy_count(logits, y), tf.constant(0.0)
        return tf.function(step)

    return Phase(fspec, data, compile_step, lambda: accuracy_fn(student, *eval_split(spec, data)))
