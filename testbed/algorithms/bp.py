"""Backprop: the end-to-end step and its per-stage pieces (forward, vector-Jacobian product)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras
import tensorflow as tf


def cross_entropy(logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """Mean softmax cross-entropy of integer labels."""
    per_sample = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.cast(labels, tf.int32), logits=logits
    )
    return tf.reduce_mean(per_sample)


Link = Callable[[tf.Tensor], tf.Tensor]  # what happens to a tensor between two stages


def forward(
    models: Sequence[keras.Model], x: tf.Tensor, training: bool = False, link: Link | None = None
) -> tf.Tensor:
    """Chain the stages: the output of one is the input of the next (through `link`, e.g. the
    compressed wire of wire_codec.crossing, when given)."""
    h = x
    for i, m in enumerate(models):
        h = m(h, training=training)
        if link is not None and i < len(models) - 1:
            h = link(h)
    return h


def accuracy_count(logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """Number of correct top-1 predictions (int32)."""
    pred = tf.argmax(logits, axis=-1, output_type=tf.int32)
    return tf.reduce_sum(tf.cast(tf.equal(pred, tf.cast(labels, tf.int32)), tf.int32))


def bp_grads(
    models: Sequence[keras.Model], x: tf.Tensor, labels: tf.Tensor, link: Link | None = None
) -> tuple[tf.Tensor, tf.Tensor, list[list[tf.Tensor]]]:
    """End-to-end loss gradients without applying them: (loss, logits, per-stage grads)."""
    with tf.GradientTape() as tape:
        logits = forward(models, x, training=True, link=link)
        loss = cross_entropy(logits, labels)
    grads = tape.gradient(loss, [m.trainable_variables for m in models])
    return loss, logits, grads


def bp_step(
    models: Sequence[keras.Model],
    optimizers: Sequence[keras.optimizers.Optimizer],
    x: tf.Tensor,
    labels: tf.Tensor,
    link: Link | None = None,
) -> tuple[tf.Tensor, tf.Tensor]:
    """One end-to-end backprop step; each stage keeps its own optimizer. Returns (loss, logits).
    `link` joins consecutive stages (see forward)."""
    loss, logits, grads = bp_grads(models, x, labels, link)
    for m, opt, g in zip(models, optimizers, grads, strict=True):
        if g:  # a parameter-free stage (a pool alone) has nothing to update
            opt.apply_gradients(zip(g, m.trainable_variables, strict=True))
    return loss, logits


def _variables(models: Sequence[keras.Model]) -> list[tf.Variable]:
    return [v for m in models for v in m.trainable_variables]


def stage_grads(
    models: Sequence[keras.Model], h_in: tf.Tensor, g_out: tf.Tensor, input_grad: bool = True
) -> tuple[list[tf.Tensor], tf.Tensor | None]:
    """Recompute a (composite) stage's forward; return its weight grads for g_out and dL/dh_in.

    `models` are consecutive stages held together; grads are flat, in their variables' order.
    dL/dh_in is None when `input_grad` is False (the first stage has nobody to send it to).
    """
    with tf.GradientTape() as tape:
        tape.watch(h_in)
        h_out = forward(models, h_in, training=True)
    targets = [*_variables(models), h_in] if input_grad else _variables(models)
    grads = tape.gradient(h_out, targets, output_gradients=g_out)
    g_in = grads.pop() if input_grad else None
    return grads, g_in


def last_stage_grads(
    models: Sequence[keras.Model], h_in: tf.Tensor, labels: tf.Tensor, loss_scale: float = 1.0
) -> tuple[tf.Tensor, tf.Tensor, list[tf.Tensor], tf.Tensor]:
    """The stage holding the logits, without update: (loss, logits, flat grads, dL/dh_in).

    Gradients are of loss_scale * loss (1/M for one of M equal micro-batches).
    """
    with tf.GradientTape() as tape:
        tape.watch(h_in)
        logits = forward(models, h_in, training=True)
        loss = cross_entropy(logits, labels)
        scaled = loss * loss_scale
    *grads, g_in = tape.gradient(scaled, [*_variables(models), h_in])
    return loss, logits, grads, g_in


def add_grads(total: Sequence[tf.Tensor] | None, grads: Sequence[tf.Tensor]) -> list[tf.Tensor]:
    """Accumulate micro-batch gradients (None starts a new sum)."""
    if total is None:
        return list(grads)
    return [a + g for a, g in zip(total, grads, strict=True)]


def apply_stage_grads(
    models: Sequence[keras.Model],
    optimizers: Sequence[keras.optimizers.Optimizer],
    grads: Sequence[tf.Tensor],
) -> None:
    """Apply flat grads (stage_grads order) with each stage's own optimizer."""
    expected = sum(len(m.trainable_variables) for m in models)
    if len(grads) != expected:
        raise ValueError(f"apply_stage_grads: got {len(grads)} grads, expected {expected}")
    start = 0
    for m, opt in zip(models, optimizers, strict=True):
        n = len(m.trainable_variables)
        if n:  # a stage of parameter-free layers (a pool) has nothing to update
            opt.apply_gradients(zip(grads[start : start + n], m.trainable_variables, strict=True))
        start += n


def last_stage_step(
    model: keras.Model,
    optimizer: keras.optimizers.Optimizer,
    h_in: tf.Tensor,
    labels: tf.Tensor,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """The stage that holds the logits: true-loss update. Returns (loss, logits, dL/dh_in)."""
    loss, logits, grads, g_in = last_stage_grads([model], h_in, labels)
    optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
    return loss, logits, g_in
