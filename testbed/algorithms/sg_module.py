"""Synthetic-gradient modules: small networks that predict dL/dh from an activation h (and the label)."""

from __future__ import annotations

import keras
import tensorflow as tf


class SGModule(keras.Model):
    """Predicts the per-sample gradient of the loss w.r.t. an activation of shape `act_shape`.

    Convolutional activations (H, W, C) get a convolutional module (a dense one on a 14x14x32 map
    would cost far more than the stage it serves); flat activations get a dense one. With
    `conditioned` (cDNI) a projection of the one-hot label is added to the first layer's
    pre-activation. The output layer (and, with no hidden layer, the label projection) is
    zero-initialised, so a fresh module predicts a zero gradient.
    """

    def __init__(
        self,
        act_shape: tuple[int, ...],
        num_classes: int,
        conditioned: bool = True,
        width: int = 64,
        depth: int = 1,
        kernel: int = 3,
    ) -> None:
        super().__init__()
        self.act_shape = tuple(act_shape)
        self.num_classes, self.conditioned, self.depth = num_classes, conditioned, depth
        self.is_conv = len(self.act_shape) == 3
        out_units = self.act_shape[-1] if self.is_conv else self.act_shape[0]
        self.hidden = [self._layer(width, kernel, "he_normal") for _ in range(depth)]
        self.out = self._layer(out_units, kernel, "zeros")
        cond_init = "glorot_uniform" if depth > 0 else "zeros"
        cond_units = width if depth > 0 else out_units
        self.cond = keras.layers.Dense(cond_units, kernel_initializer=cond_init) if conditioned else None
        self(
            (tf.zeros((1, *self.act_shape)), tf.zeros((1, num_classes)))
        )  # build the weights now

    def _layer(self, units: int, kernel: int, init: str) -> keras.layers.Layer:
        if self.is_conv:
            return keras.layers.Conv2D(units, kernel, padding="same", kernel_initializer=init)
        return keras.layers.Dense(units, kernel_initializer=init)

    def _with_label(self, z: tf.Tensor, y_onehot: tf.Tensor) -> tf.Tensor:
        if self.cond is None:
            return z
        c = self.cond(y_onehot)
        if self.is_conv:
            c = c[:, None, None, :]
        return z + c

    def call(self, inputs: tuple[tf.Tensor, tf.Tensor]) -> tf.Tensor:
        h, y_onehot = inputs
        if not self.hidden:
            return self._with_label(self.out(h), y_onehot)
        z = keras.activations.relu(self._with_label(self.hidden[0](h), y_onehot))
        for layer in self.hidden[1:]:
            z = keras.activations.relu(layer(z))
        return self.out(z)
