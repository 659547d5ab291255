"""Local-loss learning (decoupled greedy learning, InfoPro style): no gradient crosses a split.

Each non-final stage trains its own weights and its auxiliary head (`aux_head.AuxHead`) on the
cross-entropy of the head's prediction of the labels from the stage's output; the final stage
trains on the true loss. A stage's output goes forward as it was before the stage's update,
and nothing comes back, so stages on different devices never wait for each other and send no
backward message at all. The in-process step here is the reference for distributed runs.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import tensorflow as tf

from testbed.algorithms.bp import cross_entropy, forward
from testbed.algorithms.wire_codec import RAW, Codec, tf_round_trip


def local_stage_step(
    models: Sequence[keras.Model],
    head: keras.Model,
    optimizers: Sequence[keras.optimizers.Optimizer],
    head_optimizer: keras.optimizers.Optimizer,
    h_in: tf.Tensor,
    labels: tf.Tensor,
) -> tuple[tf.Tensor, tf.Tensor]:
    """Update a (composite) stage and its head on the head's loss; returns (h_out, local loss).

    h_out is the stage's output before the update, cut from the tape (what goes downstream).
    """
    stage_vars = [m.trainable_variables for m in models]
    with tf.GradientTape() as tape:
        h_out = forward(models, h_in, training=True)
        loss = cross_entropy(head(h_out, training=True), labels)
    grads, head_grads = tape.gradient(loss, [stage_vars, head.trainable_variables])
    for m, opt, g in zip(models, optimizers, grads, strict=True):
        opt.apply_gradients(zip(g, m.trainable_variables, strict=True))
    head_optimizer.apply_gradients(zip(head_grads, head.trainable_variables, strict=True))
    return tf.stop_gradient(h_out), loss


def final_stage_step(
    models: Sequence[keras.Model],
    optimizers: Sequence[keras.optimizers.Optimizer],
    h_in: tf.Tensor,
    labels: tf.Tensor,
) -> tuple[tf.Tensor, tf.Tensor]:
    """The stage holding the logits, on the true loss (no gradient for its input): (loss, logits)."""
    variables = [m.trainable_variables for m in models]
    with tf.GradientTape() as tape:
        logits = forward(models, h_in, training=True)
        loss = cross_entropy(logits, labels)
    for m, opt, g in zip(models, optimizers, tape.gradient(loss, variables), strict=True):
        opt.apply_gradients(zip(g, m.trainable_variables, strict=True))
    return loss, logits


def local_train_step(
    models: Sequence[keras.Model],
    heads: Sequence[keras.Model],
    optimizers: Sequence[keras.optimizers.Optimizer],
    head_optimizers: Sequence[keras.optimizers.Optimizer],
    x: tf.Tensor,
    labels: tf.Tensor,
    act_codec: Codec = RAW,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """One step of every stage on one batch: heads[i] sits at the output of models[i]; the
    next stage reads that output through `act_codec` (job.wire's activations, as on the wire).

    Returns (final loss, logits, the local losses of the heads as a vector)."""
    if len(heads) != len(models) - 1 or len(head_optimizers) != len(heads):
        raise ValueError(f"local_train_step: {len(models)} stages need {len(models) - 1} heads "
                         f"and head optimizers; got {len(heads)}, {len(head_optimizers)}")
    h, local = x, []
    for m, head, opt, head_opt in zip(models[:-1], heads, optimizers, head_optimizers,
                                      strict=False):
        h, loss = local_stage_step([m], head, [opt], head_opt, h, labels)
        h = tf_round_trip(h, act_codec)
        local.append(loss)
    loss, logits = final_stage_step(models[-1:], optimizers[-1:], h, labels)
    return loss, logits, tf.stack(local) if local else tf.zeros((0,))
