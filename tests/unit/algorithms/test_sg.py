"""Synthetic-gradient modules and the SG step: shapes, zero init, conditioning, learning, forward equality."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from testbed.algorithms.bp import bp_step, cross_entropy, forward
from testbed.algorithms.sg import (
    sends_target,
    sg_last_stage_step,
    sg_stage_step,
    sg_train_step,
    synthetic_gradient,
)
from testbed.algorithms.sg_module import SGModule
from testbed.algorithms.wire_codec import RAW, Codec, crossing
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


def _stage_moves(models, init):
    """Each stage's distance from its initial weights (L2 over all its variables)."""
    def distance(m, w):
        pairs = zip(m.trainable_variables, w, strict=True)
        return np.sqrt(sum(float(np.sum((v.numpy() - a) ** 2)) for v, a in pairs))

    return np.array([distance(m, w) for m, w in zip(models, init, strict=True)])


def _train_toy(algo, steps=300):
    """The toy problem trained with plain SGD (no Adam to normalise away a scale error)."""
    x, y = _toy_problem()
    models = _toy_stages()
    init = [[v.numpy().copy() for v in m.trainable_variables] for m in models]
    opts = [keras.optimizers.SGD(0.1) for _ in models]
    sgs = [SGModule((32,), 4, conditioned=True, depth=0) for _ in models[:-1]]
    sg_opts = [keras.optimizers.Adam(3e-3) for _ in sgs]
    if algo == "sg":
        step = tf.function(lambda xb, yb: sg_train_step(models, sgs, opts, sg_opts, xb, yb, 4))
    else:
        step = tf.function(lambda xb, yb: bp_step(models, opts, xb, yb))
    initial = float(cross_entropy(forward(models, x), y))
    rng = np.random.default_rng(0)
    for _ in range(steps):
        idx = rng.integers(0, len(y), 64)
        step(x[idx], y[idx])
    final = float(cross_entropy(forward(models, x), y))
    return models, sgs, initial, final, _stage_moves(models, init)


def test_sg_with_plain_sgd_learns_the_true_gradient_in_direction_and_size():
    """SG and BP from the same weights on the same batches, both with SGD: every stage moves as
    far under SG as under BP (within 2x), and the SG module after stage 1 predicts the true
    per-sample gradient in direction and norm. A target or update off by the batch size (64x),
    a flipped sign or a frozen stage cannot pass."""
    x, y = _toy_problem()
    _, _, bp_initial, bp_final, bp_moves = _train_toy("bp")
    models, sgs, initial, final, moves = _train_toy("sg")
    assert initial == pytest.approx(bp_initial)
    assert final < 0.7 * initial and bp_final < 0.7 * bp_initial
    ratio = moves / bp_moves
    assert np.all((ratio > 0.5) & (ratio < 2.0)), ratio

    h1 = models[0](x)
    with tf.GradientTape() as tape:
        tape.watch(h1)
        loss = cross_entropy(forward(models[1:], h1), y)
    true = tape.gradient(loss, h1) * len(y)
    pred = synthetic_gradient(sgs[0], h1, tf.one_hot(y, 4))
    cos = tf.reduce_sum(true * pred, 1) / (tf.norm(true, axis=1) * tf.norm(pred, axis=1) + 1e-12)
    assert float(tf.reduce_mean(cos)) > 0.5
    norm_ratio = float(tf.norm(pred) / tf.norm(true))
    assert 0.5 < norm_ratio < 2.0, norm_ratio


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_last_stage_target_is_the_per_sample_gradient_by_hand():
    """Linear last stage logits = h W + b: d(sum of per-sample CE)/dh = (softmax - onehot) W^T,
    i.e. batch_size * dL/dh of the mean loss (the SG modules' per-sample convention)."""
    rng = np.random.default_rng(4)
    w, b = rng.normal(size=(5, 3)).astype("float32"), rng.normal(size=3).astype("float32")
    h, y = rng.normal(size=(8, 5)).astype("float32"), np.array([0, 1, 2, 0, 1, 2, 2, 1])
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3)])
    model.set_weights([w, b])
    loss, _, target = sg_last_stage_step(
        model, keras.optimizers.SGD(0.0), tf.constant(h), tf.constant(y)
    )
    p = _softmax(h @ w + b)
    want = (p - np.eye(3)[y]) @ w.T
    np.testing.assert_allclose(target.numpy(), want, rtol=1e-5, atol=1e-6)
    assert float(loss) == pytest.approx(float(np.mean(-np.log(p[np.arange(8), y]))), rel=1e-5)


class _Oracle:
    """Stands in for an SG module: returns a fixed per-sample gradient, whatever it is asked."""

    def __init__(self, g):
        self.g = tf.constant(g)

    def __call__(self, inputs, training=False):
        return self.g


@pytest.mark.parametrize("grad_scale", [1.0, 0.5])
def test_sg_stage_update_from_a_perfect_prediction_is_the_bp_update_by_hand(grad_scale):
    """h = x W + b updated from a predicted per-sample gradient G with SGD(lr): the step is
    lr * grad_scale * (x^T G, sum G) / batch, and the input target is G W^T per sample."""
    rng = np.random.default_rng(5)
    w, b = rng.normal(size=(6, 4)).astype("float32"), rng.normal(size=4).astype("float32")
    x, g = rng.normal(size=(8, 6)).astype("float32"), rng.normal(size=(8, 4)).astype("float32")
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4)])
    model.set_weights([w, b])
    lr = 0.1
    h, delta = sg_stage_step(model, _Oracle(g), keras.optimizers.SGD(lr), tf.constant(x),
                             tf.one_hot([0] * 8, 3), grad_scale)
    np.testing.assert_allclose(h.numpy(), x @ w + b, rtol=1e-5, atol=1e-5)
    new_w, new_b = model.get_weights()
    np.testing.assert_allclose(new_w, w - lr * grad_scale * x.T @ g / 8, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(new_b, b - lr * grad_scale * g.sum(0) / 8, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(delta.numpy(), g @ w.T, rtol=1e-5, atol=1e-5)


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


def _toy_sg(seed=0):
    models = _toy_stages()
    keras.utils.set_random_seed(seed)
    sgs = [SGModule((32,), 4, conditioned=True, depth=0) for _ in models[:-1]]
    for sg in sgs:
        _perturb(sg)  # non-zero predictions, so every stage moves from its module
    opts = [keras.optimizers.SGD(0.1) for _ in models]
    sg_opts = [keras.optimizers.SGD(0.1) for _ in sgs]
    return models, sgs, opts, sg_opts


def _weights(models):
    return [w.copy() for m in models for w in m.get_weights()]


def _toy_batch():
    x, y = _toy_problem(64)
    return tf.constant(x), tf.constant(y)


@pytest.mark.parametrize("learn", [True, False])
def test_without_targets_the_modules_keep_still_and_every_stage_still_learns(learn):
    x, y = _toy_batch()
    models, sgs, opts, sg_opts = _toy_sg()
    before_m, before_s = _weights(models), _weights(sgs)
    _, _, sg_loss = sg_train_step(models, sgs, opts, sg_opts, x, y, 4, learn=learn)
    moved = [not np.array_equal(a, b) for a, b in zip(before_m, _weights(models))]
    assert all(moved[::2])  # every stage's kernel moved
    modules_moved = [not np.array_equal(a, b) for a, b in zip(before_s, _weights(sgs))]
    assert any(modules_moved) == learn and (sg_loss is not None) == learn


@pytest.mark.parametrize(("steps", "every"), [(10, 1), (10, 3), (9, 3), (1, 5), (100, 7)])
def test_one_batch_in_k_sends_ceil_steps_over_k_targets(steps, every):
    sent = [b for b in range(1, steps + 1) if sends_target(b, every)]
    assert len(sent) == -(-steps // every) and sent[0] == 1
    assert all(b - a == every for a, b in zip(sent, sent[1:]))


def test_activations_reach_the_next_stage_through_the_wire_codec():
    x, y = _toy_batch()
    int8 = Codec("int8")
    models, sgs, opts, sg_opts = _toy_sg()
    through_wire = forward(models, x, link=crossing(int8, RAW)).numpy()
    plain = forward(models, x).numpy()
    _, logits, _ = sg_train_step(models, sgs, opts, sg_opts, x, y, 4, wire=(int8, RAW))
    np.testing.assert_allclose(logits.numpy(), through_wire, rtol=1e-5, atol=1e-6)
    assert np.abs(logits.numpy() - plain).max() > 1e-3


def test_targets_reach_the_modules_through_the_wire_codec():
    """Same step, targets compressed or not: the stages move alike, the modules do not."""
    x, y = _toy_batch()
    runs = {}
    for name, grad in (("raw", RAW), ("top-k", Codec("fp32", topk=0.01))):
        models, sgs, opts, sg_opts = _toy_sg()
        sg_train_step(models, sgs, opts, sg_opts, x, y, 4, wire=(RAW, grad))
        runs[name] = _weights(models), _weights(sgs)
    for a, b in zip(runs["raw"][0], runs["top-k"][0]):
        np.testing.assert_array_equal(a, b)
    assert any(not np.allclose(a, b) for a, b in zip(runs["raw"][1], runs["top-k"][1]))
