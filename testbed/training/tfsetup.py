"""TensorFlow process setup shared by the in-process trainer and the workers: threads, optimizers."""

from __future__ import annotations

import warnings

import keras
import tensorflow as tf


def configure_threads(threads: int | None) -> None:
    """Set TF's thread pools; effective only before TensorFlow executes its first op.

    A process that already initialised TF (a suite or sweep running several experiments in one
    process) keeps its pools: that is reported as a warning rather than failing the run.
    """
    if not threads or tf.config.threading.get_intra_op_parallelism_threads() == threads:
        return
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        current = tf.config.threading.get_intra_op_parallelism_threads() or "default"
        warnings.warn(
            f"training.threads={threads} not applied: TensorFlow is already running in this "
            f"process with {current} intra-op threads (it applies to fresh processes only)",
            RuntimeWarning,
            stacklevel=2,
        )


def make_optimizer(name: str, lr: float) -> keras.optimizers.Optimizer:
    """The optimizer named in a spec: adam, or sgd with momentum 0.9."""
    if name == "adam":
        return keras.optimizers.Adam(lr)
    return keras.optimizers.SGD(lr, momentum=0.9)
