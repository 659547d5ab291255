"""Measure per-stage step times in process (the profile that split balancing and SG costs use)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import keras
import numpy as np
import tensorflow as tf

from testbed.algorithms.bp import apply_stage_grads, cross_entropy, last_stage_step, stage_grads
from testbed.algorithms.sg import sg_module_step, synthetic_gradient
from testbed.models import Stage


@dataclass(frozen=True)
class StageProfile:
    """Median seconds per step of one stage, and of its SG module (0 when none)."""

    stage: int
    units: tuple[str, ...]
    step_s: float
    sg_step_s: float
    params: int
    sg_params: int

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def median_time(fn: Callable[[], object], reps: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def _stage_fn(stage: Stage, is_last: bool, batch: int, classes: int) -> Callable[[], object]:
    opt = keras.optimizers.Adam(1e-9)
    h = tf.random.normal((batch, *stage.input_shape))
    if is_last:
        y = tf.zeros((batch,), tf.int32)
        fn = tf.function(lambda: last_stage_step(stage.model, opt, h, y)[0])
    else:
        g = tf.random.normal((batch, *stage.output_shape))
        first = stage.index == 0  # the first stage has no one to send dL/dh_in to

        @tf.function
        def fn() -> tf.Tensor:
            grads, _ = stage_grads([stage.model], h, g, input_grad=not first)
            apply_stage_grads([stage.model], [opt], grads)
            return grads[0]

    return lambda: fn().numpy()


def _sg_fn(stage: Stage, sg: keras.Model, batch: int, classes: int) -> Callable[[], object]:
    opt = keras.optimizers.Adam(1e-9)
    h = tf.random.normal((batch, *stage.output_shape))
    y = tf.one_hot(tf.zeros((batch,), tf.int32), classes)

    @tf.function
    def step() -> tf.Tensor:
        g = synthetic_gradient(sg, h, y)
        return sg_module_step(sg, opt, h, y, g)

    return lambda: step().numpy()


def _head_fn(stage: Stage, head: keras.Model, batch: int) -> Callable[[], object]:
    opt = keras.optimizers.Adam(1e-9)
    h = tf.random.normal((batch, *stage.output_shape))
    y = tf.zeros((batch,), tf.int32)

    @tf.function
    def step() -> tf.Tensor:
        with tf.GradientTape() as tape:
            tape.watch(h)
            loss = cross_entropy(head(h, training=True), y)
        *grads, g_h = tape.gradient(loss, [*head.trainable_variables, h])
        opt.apply_gradients(zip(grads, head.trainable_variables, strict=True))
        return g_h

    return lambda: step().numpy()


def time_head(stage: Stage, head: keras.Model, batch: int, reps: int = 10) -> float:
    """Median seconds of an auxiliary head's share of a local-loss step: its forward, its
    backward (to its weights and to the stage's output) and its update."""
    return median_time(_head_fn(stage, head, batch), reps)


def profile_stages(
    stages: Sequence[Stage],
    sgs: Sequence[keras.Model] | None,
    batch: int,
    classes: int,
    reps: int = 10,
) -> list[StageProfile]:
    """Time each stage's own forward+backward+update, and its SG module's predict+update.

    Uses throw-away optimizers with a negligible learning rate so the stages are not disturbed
    in practice; the SG module is timed on a copy-free call with its own optimizer.
    """
    out = []
    for s in stages:
        last = s.index == len(stages) - 1
        t_stage = median_time(_stage_fn(s, last, batch, classes), reps)
        sg = sgs[s.index] if sgs is not None and not last else None
        t_sg = median_time(_sg_fn(s, sg, batch, classes), reps) if sg is not None else 0.0
        out.append(
            StageProfile(
                s.index, s.units, t_stage, t_sg, s.model.count_params(),
                sg.count_params() if sg is not None else 0,
            )
        )
    return out
