"""Keras layers the zoo's CIFAR models need beyond Conv2D/Dense: LRN, a ResNet basic block, a
SqueezeNet fire module. Each is one layer, so a stage stays a `keras.Sequential` of units."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf


class LocalResponseNorm(keras.layers.Layer):
    """tf.nn.local_response_normalization as the TensorFlow CIFAR-10 tutorial uses it
    (depth_radius 4, bias 1.0, alpha 0.001 / 9, beta 0.75)."""

    def __init__(self, depth_radius: int = 4, bias: float = 1.0, alpha: float = 0.001 / 9.0,
                 beta: float = 0.75, **kwargs: Any) -> None:  # fmt: skip
        super().__init__(**kwargs)
        self.depth_radius, self.bias, self.alpha, self.beta = depth_radius, bias, alpha, beta

    def call(self, x: tf.Tensor) -> tf.Tensor:
        return tf.nn.local_response_normalization(
            x, depth_radius=self.depth_radius, bias=self.bias, alpha=self.alpha, beta=self.beta
        )


class ResidualBlock(keras.layers.Layer):
    """He et al.'s CIFAR basic block: 3x3 conv-BN-ReLU, 3x3 conv-BN, plus the shortcut, ReLU.

    The shortcut is option A of the paper (identity; when the block strides or widens, the input
    is subsampled and zero-padded in channels), which keeps ResNet-20 at 0.27M parameters.
    """

    def __init__(self, filters: int, stride: int = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.filters, self.stride = filters, stride
        conv = dict(padding="same", use_bias=False, kernel_initializer="he_normal")
        self.conv1 = keras.layers.Conv2D(filters, 3, strides=stride, **conv)
        self.bn1 = keras.layers.BatchNormalization()
        self.conv2 = keras.layers.Conv2D(filters, 3, **conv)
        self.bn2 = keras.layers.BatchNormalization()

    def call(self, x: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        h = tf.nn.relu(self.bn1(self.conv1(x), training=training))
        h = self.bn2(self.conv2(h), training=training)
        shortcut = x[:, :: self.stride, :: self.stride, :] if self.stride > 1 else x
        extra = self.filters - int(x.shape[-1])
        if extra > 0:
            shortcut = tf.pad(shortcut, [[0, 0], [0, 0], [0, 0], [extra // 2, extra - extra // 2]])
        return tf.nn.relu(h + shortcut)

    def compute_output_shape(self, shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        side = [None if d is None else -(-d // self.stride) for d in shape[1:3]]
        return (shape[0], *side, self.filters)


class Fire(keras.layers.Layer):
    """SqueezeNet's fire module: a 1x1 squeeze, then 1x1 and 3x3 expands concatenated (ReLU)."""

    def __init__(self, squeeze: int, expand: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.expand = expand
        relu = dict(activation="relu", kernel_initializer="he_normal")
        self.squeeze = keras.layers.Conv2D(squeeze, 1, **relu)
        self.expand1 = keras.layers.Conv2D(expand, 1, **relu)
        self.expand3 = keras.layers.Conv2D(expand, 3, padding="same", **relu)

    def call(self, x: tf.Tensor) -> tf.Tensor:
        s = self.squeeze(x)
        return tf.concat([self.expand1(s), self.expand3(s)], axis=-1)

    def compute_output_shape(self, shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return (*shape[:3], 2 * self.expand)
