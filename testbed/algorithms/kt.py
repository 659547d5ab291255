"""Knowledge transfer from a teacher to a small student: independent, logit KD and section-wise KT.

Pure step functions on tensors and Keras models, like bp.py and sg.py. In section-wise transfer
(KnowledgeNet) the teacher and student are split into the same number of sections; in the
decoupled form student section i reads the teacher's section input h_T[i] and is trained so that
adapter_i(student_i(h_T[i])) reproduces the teacher's section output h_T[i+1]; the last section
trains on the labels (and, with kd_weight > 0, the teacher's logits). Sections never exchange
gradients, so each can step on its own device as soon as its teacher activations arrive:
`section_step` / `final_section_step` are what such a worker calls.

Tolerating upstream error: a section may instead read the student's own upstream output (of the
same step, `section_kt_step` with a student share; or of the already trained sections before it,
`progressive_section_step`), and a non-final section may carry an auxiliary classifier head on its
adapted output (`aux_head.AuxHead`), trained on the KD loss beside the representation loss, so
the section also keeps what the labels need (decoupled greedy learning's local loss). Heads and
adapters are training aids: the deployed student has neither.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import keras
import tensorflow as tf

from testbed.algorithms.bp import cross_entropy

METHODS = ("independent", "kd", "section-kt")
SECTION_LOSSES = ("mse", "l1")


@dataclass(frozen=True)
class KtLoss:
    """Loss settings: KD temperature and soft-target weight, section loss kind and weight."""

    temperature: float = 4.0
    kd_weight: float = 0.5  # loss = (1 - w) * CE(labels) + w * T^2 * KL(teacher || student)
    section_loss: str = "mse"
    section_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if not 0.0 <= self.kd_weight <= 1.0:
            raise ValueError(f"kd_weight must be in [0, 1], got {self.kd_weight}")
        if self.section_loss not in SECTION_LOSSES:
            raise ValueError(
                f"section_loss {self.section_loss!r}; expected one of {SECTION_LOSSES}")


def kd_loss(student_logits: tf.Tensor, teacher_logits: tf.Tensor, labels: tf.Tensor,
            temperature: float, kd_weight: float) -> tf.Tensor:
    """Hinton distillation: (1 - w) * label CE + w * T^2 * KL(softmax(t/T) || softmax(s/T))."""
    hard = cross_entropy(student_logits, labels)
    if kd_weight == 0.0:
        return hard
    t = temperature
    p_teacher = tf.nn.softmax(tf.stop_gradient(teacher_logits) / t)
    log_teacher = tf.nn.log_softmax(tf.stop_gradient(teacher_logits) / t)
    log_student = tf.nn.log_softmax(student_logits / t)
    kl = tf.reduce_mean(tf.reduce_sum(p_teacher * (log_teacher - log_student), axis=-1))
    return (1.0 - kd_weight) * hard + kd_weight * t * t * kl


def representation_loss(pred: tf.Tensor, target: tf.Tensor, kind: str = "mse") -> tf.Tensor:
    """Mean over batch and features of the squared (mse) or absolute (l1) error."""
    if pred.shape[1:] != target.shape[1:]:
        raise ValueError(f"representation_loss: prediction {pred.shape} vs target {target.shape}")
    err = pred - tf.stop_gradient(target)
    if kind == "mse":
        return tf.reduce_mean(tf.square(err))
    if kind == "l1":
        return tf.reduce_mean(tf.abs(err))
    raise ValueError(f"section loss {kind!r}; expected one of {SECTION_LOSSES}")


def teacher_outputs(teacher: Sequence[keras.Model], x: tf.Tensor) -> list[tf.Tensor]:
    """[x, h_1, ..., logits]: every section's input and the final output, in inference mode."""
    outs = [x]
    for section in teacher:
        outs.append(tf.stop_gradient(section(outs[-1], training=False)))
    return outs


def _apply(optimizer: keras.optimizers.Optimizer, grads: list[tf.Tensor],
           variables: list[tf.Variable]) -> None:
    optimizer.apply_gradients(zip(grads, variables, strict=True))


def kd_step(models: Sequence[keras.Model], optimizers: Sequence[keras.optimizers.Optimizer],
            x: tf.Tensor, labels: tf.Tensor, teacher_logits: tf.Tensor,
            loss: KtLoss) -> tuple[tf.Tensor, tf.Tensor]:
    """One end-to-end student step on the distillation loss. Returns (loss, logits)."""
    with tf.GradientTape() as tape:
        h = x
        for m in models:
            h = m(h, training=True)
        value = kd_loss(h, teacher_logits, labels, loss.temperature, loss.kd_weight)
    grads = tape.gradient(value, [m.trainable_variables for m in models])
    for m, opt, g in zip(models, optimizers, grads, strict=True):
        _apply(opt, g, m.trainable_variables)
    return value, h


def section_variables(section: keras.Model, adapter: keras.Model | None,
                      head: keras.Model | None = None) -> list[tf.Variable]:
    """What one section's optimizer updates: the section, its adapter and its auxiliary head."""
    extra = [m.trainable_variables for m in (adapter, head) if m is not None]
    return [*section.trainable_variables, *(v for vs in extra for v in vs)]


@dataclass(frozen=True)
class AuxTarget:
    """What a section's auxiliary head learns from: the labels and the teacher's logits."""

    head: keras.Model
    labels: tf.Tensor
    teacher_logits: tf.Tensor
    weight: float


def section_step(section: keras.Model, adapter: keras.Model,
                 optimizer: keras.optimizers.Optimizer, h_in: tf.Tensor, target: tf.Tensor,
                 loss: KtLoss, aux: AuxTarget | None = None) -> tuple[tf.Tensor, tf.Tensor]:
    """Train a non-final student section (and its adapter) to reproduce the teacher's output.

    h_in is the section's input in the teacher's shape, target the teacher's section output.
    With `aux`, the loss also has aux.weight x the KD loss of aux.head on the adapted output
    (the head trains with the section). Returns (unweighted representation loss, the adapted
    prediction in the teacher's shape).
    """
    variables = section_variables(section, adapter, aux.head if aux else None)
    with tf.GradientTape() as tape:
        pred = adapter(section(h_in, training=True), training=True)
        value = representation_loss(pred, target, loss.section_loss)
        weighted = loss.section_weight * value
        if aux is not None:
            weighted += aux.weight * kd_loss(aux.head(pred, training=True), aux.teacher_logits,
                                             aux.labels, loss.temperature, loss.kd_weight)
    _apply(optimizer, tape.gradient(weighted, variables), variables)
    return value, tf.stop_gradient(pred)


def final_section_step(section: keras.Model, optimizer: keras.optimizers.Optimizer,
                       h_in: tf.Tensor, labels: tf.Tensor, teacher_logits: tf.Tensor,
                       loss: KtLoss) -> tuple[tf.Tensor, tf.Tensor]:
    """Train the logits section on the teacher's last section input. Returns (loss, logits)."""
    with tf.GradientTape() as tape:
        logits = section(h_in, training=True)
        value = kd_loss(logits, teacher_logits, labels, loss.temperature, loss.kd_weight)
    _apply(optimizer, tape.gradient(value, section.trainable_variables),
           section.trainable_variables)
    return value, logits


def student_path(student: tf.Tensor, teacher: tf.Tensor, share: tf.Tensor | float) -> tf.Tensor:
    """A section's input batch: the first round(share * batch) samples from the student's own
    upstream sections (their adapted output), the rest from the teacher's section input."""
    k = tf.cast(tf.round(tf.cast(share, tf.float32) * tf.cast(tf.shape(teacher)[0], tf.float32)),
                tf.int32)
    return tf.concat([student[:k], teacher[k:]], axis=0)


def ramped_share(step: tf.Tensor | float, share: float, ramp_steps: int) -> tf.Tensor:
    """The student share at `step` (0-based): growing linearly from 0 to `share` over
    `ramp_steps` (sections first learn on clean inputs, then more and more on their upstream
    sections' own outputs); constant `share` when ramp_steps is 0."""
    if ramp_steps <= 0:
        return tf.constant(share, tf.float32)
    return share * tf.minimum(1.0, tf.cast(step, tf.float32) / float(ramp_steps))


def _aux(heads: Sequence[keras.Model], i: int, labels: tf.Tensor, teacher_logits: tf.Tensor,
         weight: float) -> AuxTarget | None:
    return AuxTarget(heads[i], labels, teacher_logits, weight) if heads else None


def section_kt_step(sections: Sequence[keras.Model], adapters: Sequence[keras.Model],
                    optimizers: Sequence[keras.optimizers.Optimizer],
                    teacher_outs: Sequence[tf.Tensor], labels: tf.Tensor,
                    loss: KtLoss, student_share: tf.Tensor | float = 0.0,
                    heads: Sequence[keras.Model] = (), head_weight: float = 0.0,
                    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """One step of every student section, in process (the distributed reference).

    teacher_outs is `teacher_outputs(teacher, x)`. With student_share 0 (the decoupled form)
    section i reads the teacher's section input; with share s the first round(s * batch)
    samples instead follow the student's own chain (the previous student section's adapted
    output of this step, computed before that section's update: still no gradient between
    sections), so each section also learns on the errors its upstream sections make; 1 is the
    forward-chained form. `heads` (one per non-final section, or none) add their KD loss at
    `head_weight` (`section_step`). Returns (last-section loss, its logits, per-section representation
    losses as a vector).
    """
    n = len(sections)
    if len(adapters) != n - 1 or len(optimizers) != n or len(teacher_outs) != n + 1:
        raise ValueError(
            f"section_kt_step: {n} sections need {n - 1} adapters, {n} optimizers and {n + 1} "
            f"teacher outputs; got {len(adapters)}, {len(optimizers)}, {len(teacher_outs)}"
        )
    _check_heads(heads, n)
    rep, h = [], teacher_outs[0]
    for i in range(n - 1):
        h_in = student_path(h, teacher_outs[i], student_share)
        value, h = section_step(sections[i], adapters[i], optimizers[i], h_in,
                                teacher_outs[i + 1], loss,
                                _aux(heads, i, labels, teacher_outs[-1], head_weight))
        rep.append(value)
    h_in = student_path(h, teacher_outs[-2], student_share)
    value, logits = final_section_step(sections[-1], optimizers[-1], h_in, labels,
                                       teacher_outs[-1], loss)
    return value, logits, tf.stack(rep) if rep else tf.zeros((0,))


def _check_heads(heads: Sequence[keras.Model], n: int) -> None:
    if heads and len(heads) != n - 1:
        raise ValueError(f"{n} sections need {n - 1} auxiliary heads (one per non-final "
                         f"section) or none; got {len(heads)}")


def student_chain(sections: Sequence[keras.Model], adapters: Sequence[keras.Model],
                  x: tf.Tensor) -> tf.Tensor:
    """The trained student's adapted output after `sections` (inference mode, no gradient)."""
    h = x
    for section, adapter in zip(sections, adapters, strict=True):
        h = adapter(section(h, training=False), training=False)
    return tf.stop_gradient(h)


def progressive_section_step(i: int, sections: Sequence[keras.Model],
                             adapters: Sequence[keras.Model],
                             optimizer: keras.optimizers.Optimizer,
                             teacher_outs: Sequence[tf.Tensor], labels: tf.Tensor, loss: KtLoss,
                             heads: Sequence[keras.Model] = (), head_weight: float = 0.0,
                             ) -> tuple[tf.Tensor, tf.Tensor]:
    """One step of section i alone, reading the output of the (already trained, frozen) student
    sections before it: progressive section-kt trains the sections one after another, so each
    learns on exactly the upstream errors the deployed student will make. Non-final sections
    train as in `section_step` (with their head, if any), the last on the KD loss. Returns
    (the section's loss: representation loss, or the KD loss for the last; the logits of the
    student as assembled so far, or of the last section)."""
    n = len(sections)
    _check_heads(heads, n)
    h_in = student_chain(sections[:i], adapters[:i], teacher_outs[0])
    if i == n - 1:
        return final_section_step(sections[i], optimizer, h_in, labels, teacher_outs[-1], loss)
    value, h = section_step(sections[i], adapters[i], optimizer, h_in, teacher_outs[i + 1], loss,
                            _aux(heads, i, labels, teacher_outs[-1], head_weight))
    for section, adapter in zip(sections[i + 1:-1], adapters[i + 1:], strict=True):
        h = adapter(section(h, training=False), training=False)
    return value, sections[-1](h, training=False)
