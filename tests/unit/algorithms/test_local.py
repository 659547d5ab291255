"""Local-loss learning: each stage learns from its own head's loss, and nothing crosses a split."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from testbed.algorithms.aux_head import AuxHead
from testbed.algorithms.bp import cross_entropy, forward
from testbed.algorithms.local import final_stage_step, local_stage_step, local_train_step


@pytest.mark.parametrize(("shape", "pooled"), [((14, 14, 32), 2 * 2 * 32), ((7, 7, 8), 2 * 2 * 8),
                                               ((256,), 256)])
def test_head_pools_feature_maps_to_about_pool_by_pool_then_classifies(shape, pooled):
    head = AuxHead(shape, 10, width=16, depth=0, pool=2)
    assert head(tf.random.normal((5, *shape))).shape == (5, 10)
    assert head.body[-1].kernel.shape == (pooled, 10)  # linear on the pooled features
    deep = AuxHead(shape, 10, width=16, depth=2)
    assert [getattr(layer, "units", None) for layer in deep.body][-3:] == [16, 16, 10]


def _toy_problem(n=2048, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 20)).astype("float32")
    w = rng.normal(size=(20, 4)).astype("float32")
    y = np.argmax(np.tanh(x @ w) + 0.1 * rng.normal(size=(n, 4)), axis=1).astype("int64")
    return x, y


def _toy(seed=0):
    keras.utils.set_random_seed(seed)
    models = [keras.Sequential([keras.Input((20,)), keras.layers.Dense(32, activation="relu")]),
              keras.Sequential([keras.Input((32,)), keras.layers.Dense(32, activation="relu")]),
              keras.Sequential([keras.Input((32,)), keras.layers.Dense(4)])]
    heads = [AuxHead((32,), 4) for _ in models[:-1]]
    return models, heads


def _stage_losses(models, heads, x, y):
    """Each head's loss on its stage's output, then the model's own loss."""
    out, h = [], x
    for m, head in zip(models[:-1], heads, strict=True):
        h = m(h)
        out.append(float(cross_entropy(head(h), y)))
    return [*out, float(cross_entropy(models[-1](h), y))]


def test_local_training_lowers_every_stages_loss():
    x, y = _toy_problem()
    models, heads = _toy()
    opts = [keras.optimizers.Adam(3e-3) for _ in models]
    head_opts = [keras.optimizers.Adam(3e-3) for _ in heads]
    step = tf.function(lambda xb, yb: local_train_step(models, heads, opts, head_opts, xb, yb))
    before = _stage_losses(models, heads, x, y)
    rng = np.random.default_rng(0)
    for _ in range(300):
        idx = rng.integers(0, len(y), 64)
        step(x[idx], y[idx])
    after = _stage_losses(models, heads, x, y)
    assert all(a < 0.6 * b for a, b in zip(after, before, strict=True)), (before, after)
    assert np.mean(np.argmax(forward(models, x), -1) == y) > 0.7  # chance: 0.25


def _sgd_delta(variables, before):
    return [v.numpy() - b for v, b in zip(variables, before, strict=True)]


def test_a_stage_and_its_head_step_down_their_own_loss_gradient():
    """The update is exactly -lr * d CE(head(stage(h)), y): catches a flipped sign, a wrong
    scale, a frozen stage or head, and a loss taken from anywhere else."""
    x, y = _toy_problem(64)
    (stage, _, _), (head, _) = _toy()
    lr = 0.1
    with tf.GradientTape() as tape:
        want_out = stage(x)
        loss = cross_entropy(head(want_out), y)
    g_stage, g_head = tape.gradient(loss, [stage.trainable_variables, head.trainable_variables])
    s0 = [v.numpy() for v in stage.trainable_variables]
    h0 = [v.numpy() for v in head.trainable_variables]
    h_out, got_loss = local_stage_step([stage], head, [keras.optimizers.SGD(lr)],
                                       keras.optimizers.SGD(lr), x, y)
    np.testing.assert_allclose(got_loss, loss, rtol=1e-6)
    np.testing.assert_allclose(h_out, want_out, rtol=1e-6)  # the output before the update
    for delta, g in zip(_sgd_delta(stage.trainable_variables, s0), g_stage, strict=True):
        assert np.abs(g).max() > 0
        np.testing.assert_allclose(delta, -lr * g.numpy(), rtol=1e-4, atol=1e-7)
    for delta, g in zip(_sgd_delta(head.trainable_variables, h0), g_head, strict=True):
        np.testing.assert_allclose(delta, -lr * g.numpy(), rtol=1e-4, atol=1e-7)


def test_the_final_stage_steps_down_the_true_loss():
    x, y = _toy_problem(64)
    (_, _, last), _ = _toy()
    h = tf.random.normal((64, 32))
    with tf.GradientTape() as tape:
        loss = cross_entropy(last(h), y)
    grads = tape.gradient(loss, last.trainable_variables)
    before = [v.numpy() for v in last.trainable_variables]
    got, _ = final_stage_step([last], [keras.optimizers.SGD(0.1)], h, y)
    np.testing.assert_allclose(got, loss, rtol=1e-6)
    for delta, g in zip(_sgd_delta(last.trainable_variables, before), grads, strict=True):
        np.testing.assert_allclose(delta, -0.1 * g.numpy(), rtol=1e-4, atol=1e-7)


def test_no_gradient_crosses_a_split():
    """Stage 0's update is the same whatever the later stages and heads are (in BP it is not)."""
    x, y = _toy_problem(64)
    weights = []
    for later_seed in (1, 2):
        models, heads = _toy(0)
        keras.utils.set_random_seed(later_seed)
        for m in [*models[1:], heads[1]]:
            for v in m.trainable_variables:
                v.assign(tf.random.normal(v.shape))
        opts = [keras.optimizers.SGD(0.1) for _ in models]
        local_train_step(models, heads, opts, [keras.optimizers.SGD(0.1) for _ in heads], x, y)
        weights.append([v.numpy() for v in models[0].trainable_variables])
    for a, b in zip(*weights, strict=True):
        np.testing.assert_array_equal(a, b)


def test_the_step_checks_its_heads():
    models, heads = _toy()
    opts = [keras.optimizers.SGD(0.1) for _ in models]
    with pytest.raises(ValueError, match="3 stages need 2 heads"):
        local_train_step(models, heads[:1], opts, [keras.optimizers.SGD(0.1)], *_toy_problem(8))


def test_the_next_stage_reads_the_activation_through_the_wire_codec():
    """job.wire in process: each stage's output crosses int8 before the next stage reads it,
    as it would on the network (and the heads see the stage's exact output)."""
    from testbed.algorithms.wire_codec import Codec, round_trip

    x, y = _toy_problem(64)
    models, heads = _toy()
    opts = [keras.optimizers.SGD(0.0) for _ in models]  # lr 0: values only
    int8 = Codec("int8")
    h = x
    for m in models[:-1]:
        h = round_trip(m(h).numpy(), int8)
    want = float(cross_entropy(models[-1](h), y))
    exact = float(cross_entropy(forward(models, x), y))
    assert abs(want - exact) > 1e-6  # the codec changes what the last stage sees
    head_opts = [keras.optimizers.SGD(0.0) for _ in heads]
    loss, _, local = local_train_step(models, heads, opts, head_opts, x, y, int8)
    assert float(loss) == pytest.approx(want, rel=1e-5)
    assert float(local[0]) == pytest.approx(float(cross_entropy(heads[0](models[0](x)), y)),
                                            rel=1e-5)
