"""Per-stage gradient pieces: micro-batch accumulation equals full-batch backprop (GPipe's math)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from testbed.algorithms.bp import (
    add_grads,
    apply_stage_grads,
    bp_grads,
    forward,
    last_stage_grads,
    stage_grads,
)
from testbed.models import build_stages, get_model


def _stages() -> list[keras.Model]:
    keras.utils.set_random_seed(5)
    return [
        s.model for s in build_stages(get_model("four-layer"), (28, 28, 1), ["conv1", "fc1"], 0.25)
    ]


def _data(n: int = 16) -> tuple[tf.Tensor, tf.Tensor]:
    rng = np.random.default_rng(0)
    return tf.constant(rng.random((n, 28, 28, 1), np.float32)), tf.constant(rng.integers(0, 10, n))


@pytest.mark.parametrize("micro", [1, 4])
def test_micro_batched_stage_grads_equal_full_batch_backprop(micro: int) -> None:
    models = _stages()
    x, y = _data()
    _, _, reference = bp_grads(models, x, y)
    totals: list = [None, None, None]
    for xs, ys in zip(tf.split(x, micro), tf.split(y, micro), strict=True):
        h1 = forward(models[:1], xs, training=True)
        h2 = forward(models[1:2], h1, training=True)
        _, _, g3, g_h2 = last_stage_grads(models[2:], h2, ys, 1.0 / micro)
        g2, g_h1 = stage_grads(models[1:2], h1, g_h2)
        g1, none = stage_grads(models[:1], xs, g_h1, input_grad=False)
        assert none is None
        totals = [add_grads(t, g) for t, g in zip(totals, (g1, g2, g3), strict=True)]
    for got, want in zip(totals, reference, strict=True):
        for a, b in zip(got, want, strict=True):
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-6)


def test_composite_stage_grads_cover_every_variable_in_order() -> None:
    models = _stages()
    x, _ = _data(4)
    grads, g_in = stage_grads(models[:2], x, tf.ones((4, 64)))
    shapes = [tuple(v.shape) for m in models[:2] for v in m.trainable_variables]
    assert [tuple(g.shape) for g in grads] == shapes and g_in.shape == x.shape


def test_apply_stage_grads_splits_per_model_and_checks_the_count() -> None:
    models = _stages()[:2]
    opts = [keras.optimizers.SGD(1.0) for _ in models]
    before = [v.numpy().copy() for m in models for v in m.trainable_variables]
    ones = [tf.ones_like(v) for m in models for v in m.trainable_variables]
    apply_stage_grads(models, opts, ones)
    after = [v.numpy() for m in models for v in m.trainable_variables]
    for b, a in zip(before, after, strict=True):
        np.testing.assert_allclose(a, b - 1.0, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match=r"got 3 grads, expected"):
        apply_stage_grads(models, opts, ones[:3])
