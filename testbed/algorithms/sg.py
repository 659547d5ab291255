"""Synthetic gradients (decoupled neural interfaces): per-stage updates that never wait for backprop.

Scaling convention: SG modules predict the *per-sample* gradient, i.e. batch_size * dL/dh for the
batch-mean loss L, so their targets do not depend on the batch size. A stage applies
grad_scale * g_hat / batch_size as the upstream gradient of its output.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from testbed.algorithms.bp import last_stage_step
from testbed.algorithms.wire_codec import RAW, Codec, tf_round_trip


def _batch(x: tf.Tensor) -> tf.Tensor:
    return tf.cast(tf.shape(x)[0], tf.float32)


def synthetic_gradient(sg: keras.Model, h: tf.Tensor, y_onehot: tf.Tensor) -> tf.Tensor:
    """The module's per-sample gradient estimate for activation h."""
    return sg((h, y_onehot), training=False)


def sg_stage_step(
    model: keras.Model,
    sg: keras.Model,
    optimizer: keras.optimizers.Optimizer,
    h_in: tf.Tensor,
    y_onehot: tf.Tensor,
    grad_scale: float = 1.0,
    input_grad: bool = True,
) -> tuple[tf.Tensor, tf.Tensor | None]:
    """Forward a non-final stage and update it at once from its SG module's prediction.

    Returns (h_out, delta_in): delta_in is the per-sample gradient w.r.t. h_in implied by the
    synthetic gradient (the bootstrapped regression target of the previous stage's SG module), or
    None when `input_grad` is False (the first stage has no previous module).
    """
    with tf.GradientTape() as tape:
        tape.watch(h_in)
        h_out = model(h_in, training=True)
    g_hat = synthetic_gradient(sg, h_out, y_onehot)
    targets = [*model.trainable_variables, h_in] if input_grad else model.trainable_variables
    grads = tape.gradient(h_out, targets, output_gradients=g_hat)
    delta_in = grads.pop() if input_grad else None
    scale = grad_scale / _batch(h_in)
    if grads:  # a stage of parameter-free layers (a pool) has nothing to update
        optimizer.apply_gradients(
            zip([g * scale for g in grads], model.trainable_variables, strict=True)
        )
    return h_out, delta_in


def sg_module_step(
    sg: keras.Model,
    optimizer: keras.optimizers.Optimizer,
    h: tf.Tensor,
    y_onehot: tf.Tensor,
    target: tf.Tensor,
) -> tf.Tensor:
    """Regress the SG module's prediction for h onto the (per-sample) gradient target; returns the loss."""
    with tf.GradientTape() as tape:
        pred = sg((h, y_onehot), training=True)
        err = tf.reshape(pred - tf.stop_gradient(target), (tf.shape(h)[0], -1))
        loss = tf.reduce_mean(tf.reduce_sum(tf.square(err), axis=-1))
    grads = tape.gradient(loss, sg.trainable_variables)
    optimizer.apply_gradients(zip(grads, sg.trainable_variables, strict=True))
    return loss


def sg_last_stage_step(
    model: keras.Model,
    optimizer: keras.optimizers.Optimizer,
    h_in: tf.Tensor,
    labels: tf.Tensor,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """The final stage trains on the true loss; returns (loss, logits, per-sample dL/dh_in target)."""
    loss, logits, g_in = last_stage_step(model, optimizer, h_in, labels)
    return loss, logits, g_in * _batch(h_in)


def sg_train_step(
    models: list[keras.Model],
    sgs: list[keras.Model],
    optimizers: list[keras.optimizers.Optimizer],
    sg_optimizers: list[keras.optimizers.Optimizer],
    x: tf.Tensor,
    labels: tf.Tensor,
    num_classes: int,
    grad_scale: float = 1.0,
    wire: tuple[Codec, Codec] = (RAW, RAW),
    learn: bool = True,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor | None]:
    """One decoupled step of all stages on one batch, in process (the distributed reference).

    sgs[i] sits at the output of models[i]. Each stage updates from its own SG prediction; each
    SG module then regresses onto the target the next stage produced. Activations reach the
    next stage, and targets the previous one, through the (activations, gradients) codecs of
    `wire`. With `learn` False no target is sent (algorithm.sg.target_every) and the modules
    do not learn. Returns (loss, logits, mean SG loss or None).
    """
    act_codec, grad_codec = wire
    y1h = tf.one_hot(tf.cast(labels, tf.int32), num_classes)
    h, outputs, deltas = x, [], []
    for i, (m, sg, opt) in enumerate(zip(models[:-1], sgs, optimizers, strict=False)):
        h, delta = sg_stage_step(m, sg, opt, h, y1h, grad_scale, input_grad=i > 0 and learn)
        outputs.append(h)
        h = tf_round_trip(h, act_codec)
        if delta is not None:
            deltas.append(delta)
    loss, logits, last_delta = sg_last_stage_step(models[-1], optimizers[-1], h, labels)
    if not learn:
        return loss, logits, None
    deltas.append(last_delta)
    sg_losses = [
        sg_module_step(sg, sg_opt, h_out, y1h, tf_round_trip(target, grad_codec))
        for sg, sg_opt, h_out, target in zip(sgs, sg_optimizers, outputs, deltas, strict=True)
    ]
    return loss, logits, tf.add_n(sg_losses) / len(sg_losses)


def sends_target(batch_id: int, every: int) -> bool:
    """Whether batch `batch_id` (1, 2, ...) carries SG targets upstream: batch 1 and every
    `every`-th after it, so `steps` batches carry ceil(steps / every)."""
    return (batch_id - 1) % every == 0
