"""Auxiliary heads: small classifiers on a stage's output that give the stage its own local loss."""

from __future__ import annotations

import math

import keras
import tensorflow as tf


class AuxHead(keras.Model):
    """Predicts the class logits from an activation of shape `act_shape` (decoupled greedy
    learning's auxiliary network, its MLP form).

    Feature maps (H, W, C) are average-pooled down to about `pool` x `pool` (DGL's adaptive
    pooling) and flattened; then `depth` dense layers of `width` units and the output layer.
    With depth 0 the head is linear (after the pooling).
    """

    def __init__(self, act_shape: tuple[int, ...], num_classes: int, width: int = 128,
                 depth: int = 1, pool: int = 7) -> None:
        super().__init__()
        self.act_shape = tuple(act_shape)
        self.is_conv = len(self.act_shape) == 3
        layers: list[keras.layers.Layer] = []
        if self.is_conv:
            h, w = self.act_shape[:2]
            size = (max(1, math.ceil(h / pool)), max(1, math.ceil(w / pool)))
            layers += [keras.layers.AveragePooling2D(size, padding="same"), keras.layers.Flatten()]
        layers += [keras.layers.Dense(width, activation="relu") for _ in range(depth)]
        layers.append(keras.layers.Dense(num_classes))
        self.body = layers
        self(tf.zeros((1, *self.act_shape)))  # build the weights now

    def call(self, h: tf.Tensor) -> tf.Tensor:
        for layer in self.body:
            h = layer(h)
        return h
