"""Synthetic-gradient modules and the SG step: shapes, zero init, conditioning, learning, forward equality."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from testbed.algorithms.bp import bp_step, cross_entropy, forward
from testbed.algorithms.sg import sg_train_step, synthetic_gradient
from testbed.algorithms.sg_module import SGModule
from testbed.models import build_stages, get_model


@pytest.mark.parametrize("shape", [(14, 14, 32), (256,)])
@pytest.mark.parametrize("depth", [0, 2])
def test_sg_module_output_shape_and_zero_init(shape, depth):
    sg = SGModule(shape, 10, conditioned=True, width=16, depth=depth)
    h = tf.random.normal((5, *shape))
    y = tf.one_hot([0, 1, 2, 3, 4], 10)
    g = sg((h, y))
    assert g.shape == (5, *shape)
    assert float(tf.reduce_max(tf.abs(g))) == 0.0  # zero-initialised output layer


def test_conv_activation_gets_conv_module_dense_gets_dense():
    assert SGModule((14, 14, 32), 10).is_conv
    assert not SGModule((256,), 10).is_conv
    conv = SGModule((14, 14, 32), 10, width=32, depth=1)
    assert any(isinstance(layer, keras.layers.Conv2D) for layer in conv.hidden)


def _perturb(model):
    for v in model.trainable_variables:
        v.assign(tf.random.normal(v.shape, stddev=0.1))


@pytest.mark.parametrize("conditioned", [True, False])
def test_label_conditioning_on_off(conditioned):
    keras.utils.set_random_seed(1)
    sg = SGModule((32,), 10, conditioned=conditioned, width=16, depth=1)
    _perturb(sg)
    h = tf.tile(tf.random.normal((1, 32)), (2, 1))  # same activation, two different labels
    g = sg((h, tf.one_hot([0, 7], 10))).numpy()
    differs = not np.allclose(g[0], g[1])
    assert differs == conditioned
    assert (sg.cond is not None) == conditioned


def _toy_problem(n=2048, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 20)).astype("float32")
    w = rng.normal(size=(20, 4)).astype("float32")
    y = np.argmax(np.tanh(x @ w) + 0.1 * rng.normal(size=(n, 4)), axis=1).astype("int64")
    return x, y


def _toy_stages():
    keras.utils.set_random_seed(0)
    a = keras.Sequential([keras.Input((20,)), keras.layers.Dense(32, activation="relu")])
    b = keras.Sequential([keras.Input((32,)), keras.layers.Dense(32, activation="relu")])
    c = keras.Sequential([keras.Input((32,)), keras.layers.Dense(4)])
    return [a, b, c]


def test_sg_training_lowers_loss_and_learns_the_true_gradient():
    x, y = _toy_problem()
    models = _toy_stages()
    sgs = [SGModule((32,), 4, conditioned=True, depth=0) for _ in models[:-1]]
    opts = [keras.optimizers.Adam(3e-3) for _ in models]
    sg_opts = [keras.optimizers.Adam(3e-3) for _ in sgs]
    step = tf.function(lambda xb, yb: sg_train_step(models, sgs, opts, sg_opts, xb, yb, 4))
    initial = float(cross_entropy(forward(models, x), y))
    rng = np.random.default_rng(0)
    for _ in range(400):
        idx = rng.integers(0, len(y), 64)
        step(x[idx], y[idx])
    final = float(cross_entropy(forward(models, x), y))
    assert final < 0.7 * initial

    # The SG module after stage 1 vs the true per-sample gradient of the loss at h1.
    h1 = models[0](x)
    with tf.GradientTape() as tape:
        tape.watch(h1)
        loss = cross_entropy(forward(models[1:], h1), y)
    true = tape.gradient(loss, h1) * len(y)
    pred = synthetic_gradient(sgs[0], h1, tf.one_hot(y, 4))
    cos = tf.reduce_sum(true * pred, 1) / (tf.norm(true, axis=1) * tf.norm(pred, axis=1) + 1e-12)
    assert float(tf.reduce_mean(cos)) > 0.5


def test_bp_and_sg_agree_on_the_forward_pass():
    keras.utils.set_random_seed(3)
    stages = build_stages(get_model("four-layer"), (28, 28, 1))
    models = [s.model for s in stages]
    x = tf.random.uniform((8, 28, 28, 1))
    y = tf.constant([0, 1, 2, 3, 4, 5, 6, 7], tf.int64)
    reference = forward(models, x).numpy()
    weights = [m.get_weights() for m in models]
    sgs = [SGModule(s.output_shape, 10) for s in stages[:-1]]
    adam = [keras.optimizers.Adam(1e-3) for _ in models]
    _, sg_logits, _ = sg_train_step(models, sgs, adam, [keras.optimizers.Adam(1e-3) for _ in sgs], x, y, 10)
    for m, w in zip(models, weights):
        m.set_weights(w)
    _, bp_logits = bp_step(models, [keras.optimizers.Adam(1e-3) for _ in models], x, y)
    np.testing.assert_allclose(sg_logits.numpy(), reference, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(bp_logits.numpy(), reference, rtol=1e-5, atol=1e-5)
