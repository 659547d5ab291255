"""Backprop: the end-to-end step and its per-stage pieces (forward, vector-Jacobian product)."""

from __future__ import annotations

from collections.abc import Sequence

import keras
import tensorflow as tf


def cross_entropy(logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """Mean softmax cross-entropy of integer labels."""
    per_sample = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.cast(labels, tf.int32), logits=logits
    )
    return tf.reduce_mean(per_sample)


def forward(models: Sequence[keras.Model], x: tf.Tensor, training: bool = False) -> tf.Tensor:
    """Chain the stages: the output of one is the input of the next."""
    h = x
    for m in models:
        h = m(h, training=training)
    return h


def accuracy_count(logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """Number of correct top-1 predictions (int32)."""
    pred = tf.argmax(logits, axis=-1, output_type=tf.int32)
    return tf.reduce_sum(tf.cast(tf.equal(pred, tf.cast(labels, tf.int32)), tf.int32))


def bp_step(
    models: Sequence[keras.Model],
    optimizers: Sequence[keras.optimizers.Optimizer],
    x: tf.Tensor,
    labels: tf.Tensor,
) -> tuple[tf.Tensor, tf.Tensor]:
    """One end-to-end backprop step; each stage keeps its own optimizer. Returns (loss, logits)."""
    with tf.GradientTape() as tape:
        logits = forward(models, x, training=True)
        loss = cross_entropy(logits, labels)
    grads = tape.gradient(loss, [m.trainable_variables for m in models])
    for m, opt, g in zip(models, optimizers, grads, strict=True):
        opt.apply_gradients(zip(g, m.trainable_variables, strict=True))
    return loss, logits


def stage_backward(
    model: keras.Model,
    optimizer: keras.optimizers.Optimizer,
    h_in: tf.Tensor,
    g_out: tf.Tensor,
) -> tf.Tensor:
    """Recompute a stage's forward, apply the update for upstream gradient g_out, return dL/dh_in."""
    with tf.GradientTape() as tape:
        tape.watch(h_in)
        h_out = model(h_in, training=True)
    *grads, g_in = tape.gradient(h_out, [*model.trainable_variables, h_in], output_gradients=g_out)
    optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
    return g_in


def last_stage_step(
    model: keras.Model,
    optimizer: keras.optimizers.Optimizer,
    h_in: tf.Tensor,
    labels: tf.Tensor,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """The stage that holds the logits: true-loss update. Returns (loss, logits, dL/dh_in)."""
    with tf.GradientTape() as tape:
        tape.watch(h_in)
        logits = model(h_in, training=True)
        loss = cross_entropy(logits, labels)
    *grads, g_in = tape.gradient(loss, [*model.trainable_variables, h_in])
    optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
    return loss, logits, g_in
