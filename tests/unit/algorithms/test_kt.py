"""Knowledge transfer math: adapters, folding, losses, section-kt learning, pair sizes."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from testbed.algorithms.aux_head import AuxHead
from testbed.algorithms.bp import forward
from testbed.algorithms.kt import (
    AuxTarget,
    KtLoss,
    kd_loss,
    progressive_section_step,
    representation_loss,
    section_kt_step,
    section_step,
    teacher_outputs,
)
from testbed.algorithms.kt_adapter import chain, fold_adapter, fold_student, make_adapter
from testbed.models import build_stages, get_model
from testbed.models.pairs import KT_PAIRS, compression, model_params, pair_sizes
from testbed.training.kt_trainables import build_sections


def _seq(shape, *layers, name="s"):
    return keras.Sequential([keras.Input(shape), *layers], name=name)


@pytest.mark.parametrize(
    ("student", "teacher", "project"),
    [((7, 7, 8), (7, 7, 32), keras.layers.Conv2D), ((64,), (256,), keras.layers.Dense),
     ((4, 4, 8), (7, 7, 16), keras.layers.Conv2D)],
)
def test_adapter_maps_student_shape_to_teacher_shape(student, teacher, project):
    a = make_adapter(student, teacher)
    out = a(tf.random.normal((3, *student)))
    assert out.shape == (3, *teacher)
    assert isinstance(a.get_layer("project"), project)
    assert not a.get_layer("project").use_bias  # bias-free, so it folds exactly
    assert any(isinstance(layer, keras.layers.Resizing) for layer in a.layers) == (student[:2] != teacher[:2] and len(student) == 3)


def test_adapter_rejects_rank_mismatch():
    with pytest.raises(ValueError, match=r"both be feature maps \(H, W, C\) or both flat"):
        make_adapter((7, 7, 8), (256,))


def test_section_loss_shapes_for_mismatched_widths():
    keras.utils.set_random_seed(0)
    section = _seq((14, 14, 32), keras.layers.Conv2D(8, 3, padding="same"), keras.layers.MaxPooling2D(2))
    adapter = make_adapter((7, 7, 8), (7, 7, 64))
    h_in, target = tf.random.normal((5, 14, 14, 32)), tf.random.normal((5, 7, 7, 64))
    pred = adapter(section(h_in))
    assert pred.shape == target.shape
    for kind in ("mse", "l1"):
        assert representation_loss(pred, target, kind).shape == ()
    with pytest.raises(ValueError, match="prediction"):
        representation_loss(section(h_in), target)


def test_kd_loss_reduces_to_cross_entropy_and_vanishes_on_teacher_logits():
    logits = tf.constant([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
    labels = tf.constant([0, 2])
    ce = kd_loss(logits, logits * 0, labels, 4.0, 0.0)
    assert float(ce) == pytest.approx(float(tf.reduce_mean(
        tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))))
    assert float(kd_loss(logits, logits, labels, 4.0, 1.0)) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="kd_weight"):
        KtLoss(kd_weight=1.5)


@pytest.mark.parametrize("first", ["conv", "flatten-dense", "dense", "resize-conv"])
def test_folded_section_equals_adapter_then_section(first):
    keras.utils.set_random_seed(1)
    if first == "dense":
        s_shape, t_shape = (6,), (10,)
        section = _seq(t_shape, keras.layers.Dense(5, activation="relu"))
    elif first == "flatten-dense":
        s_shape, t_shape = (3, 3, 4), (3, 3, 9)
        section = _seq(t_shape, keras.layers.Flatten(), keras.layers.Dense(5, activation="relu"))
    else:
        s_shape = (4, 4, 3) if first == "conv" else (2, 2, 3)
        t_shape = (4, 4, 7)
        section = _seq(t_shape, keras.layers.Conv2D(5, 3, padding="same", activation="relu"),
                       keras.layers.MaxPooling2D(2))
    adapter = make_adapter(s_shape, t_shape)
    folded = fold_adapter(adapter, section)
    h = tf.random.uniform((4, *s_shape))
    np.testing.assert_allclose(folded(h), section(adapter(h)), rtol=1e-4, atol=1e-5)
    assert folded.count_params() < section.count_params() + adapter.count_params()


def test_folding_refuses_a_section_that_starts_with_a_pool():
    section = _seq((4, 4, 7), keras.layers.MaxPooling2D(2), keras.layers.Conv2D(3, 1))
    with pytest.raises(ValueError, match="starts with MaxPooling2D"):
        fold_adapter(make_adapter((4, 4, 3), (4, 4, 7)), section)


def _tiny_pair(seed=0):
    """four-layer on 8x8 images: teacher at width 0.5, section-kt student at width 0.25."""
    keras.utils.set_random_seed(seed)
    teacher = [s.model for s in build_stages(get_model("four-layer"), (8, 8, 1), width=0.5)]
    shapes = [tuple(int(d) for d in t.input_shape[1:]) for t in teacher]
    sections = build_sections(get_model("four-layer"), None, shapes, 0.25)
    adapters = [make_adapter(s.output_shape[1:], t.output_shape[1:])
                for s, t in zip(sections[:-1], teacher[:-1], strict=True)]
    return teacher, sections, adapters


def test_deployed_student_has_the_zoo_students_size_and_function():
    teacher, sections, adapters = _tiny_pair()
    deployed = fold_student(sections, adapters)
    zoo = build_stages(get_model("four-layer"), (8, 8, 1), width=0.25)
    assert [m.count_params() for m in deployed] == [s.model.count_params() for s in zoo]
    x = tf.random.uniform((6, 8, 8, 1))
    np.testing.assert_allclose(forward(deployed, x), forward(chain(sections, adapters), x),
                               rtol=1e-4, atol=1e-5)


def test_section_step_trains_only_its_section_and_adapter():
    teacher, sections, adapters = _tiny_pair()
    outs = teacher_outputs(teacher, tf.random.uniform((8, 8, 8, 1)))
    before = [[v.numpy().copy() for v in m.trainable_variables] for m in sections]
    section_step(sections[1], adapters[1], keras.optimizers.Adam(1e-2), outs[1], outs[2], KtLoss())
    changed = [any(not np.array_equal(a, v.numpy()) for a, v in zip(b, m.trainable_variables, strict=True))
               for b, m in zip(before, sections, strict=True)]
    assert changed == [False, True, False, False]


@pytest.mark.parametrize("share", [0.0, 0.5, 1.0])
def test_section_kt_reduces_every_sections_representation_loss(share):
    teacher, sections, adapters = _tiny_pair()
    rng = np.random.default_rng(0)
    x = tf.constant(rng.uniform(size=(64, 8, 8, 1)).astype("float32"))
    y = tf.constant(rng.integers(0, 10, 64))
    outs = teacher_outputs(teacher, x)
    opts = [keras.optimizers.Adam(3e-3) for _ in sections]
    step = tf.function(lambda: section_kt_step(sections, adapters, opts, outs, y, KtLoss(), share))
    first = step()[2].numpy()
    for _ in range(60):
        last = step()[2].numpy()
    assert first.shape == (3,)
    assert np.all(last < 0.5 * first), (first, last)


def test_section_kt_step_checks_counts():
    teacher, sections, adapters = _tiny_pair()
    with pytest.raises(ValueError, match="4 sections need 3 adapters"):
        section_kt_step(sections, adapters[:1], [None] * 4, [None] * 5, None, KtLoss())


def test_compression_of_a_tiny_pair_by_hand():
    # four-layer at width 0.25 on 8x8x1: conv 8@5x5 (1*25*8 + 8), pool -> 4x4x8, FC 64, FC 64, FC 10
    student = model_params("four-layer", (8, 8, 1), width=0.25)
    assert student == [1 * 25 * 8 + 8, 128 * 64 + 64, 64 * 64 + 64, 64 * 10 + 10]
    teacher = model_params("four-layer", (8, 8, 1), width=0.5)
    assert teacher == [1 * 25 * 16 + 16, 256 * 128 + 128, 128 * 128 + 128, 128 * 10 + 10]
    c = compression(sum(teacher), sum(student))
    assert c["student_fraction"] == pytest.approx(sum(student) / sum(teacher))
    assert c["smaller_pct"] == pytest.approx(100 * (1 - sum(student) / sum(teacher)))
    with pytest.raises(ValueError, match="positive"):
        compression(0, 1)


def test_registered_pairs_meet_the_size_target():
    for key in KT_PAIRS:
        sizes = pair_sizes(KT_PAIRS.get(key))
        assert sizes["teacher_params"] == sum(sizes["teacher_sections"])
        assert len(sizes["teacher_sections"]) == len(sizes["student_sections"])
        assert sizes["student_fraction"] <= 0.38, key  # >= 62% smaller


@pytest.mark.parametrize("key", sorted(KT_PAIRS))
def test_registered_pair_steps_and_folds_to_the_zoo_student(key):
    """Each pair at quarter width on random images: one section-kt step, then the folded student."""
    pair = KT_PAIRS.get(key)
    keras.utils.set_random_seed(0)
    teacher = [s.model for s in build_stages(get_model(pair.teacher), pair.input_shape,
                                             pair.teacher_split, 0.25)]
    shapes = [tuple(int(d) for d in t.input_shape[1:]) for t in teacher]
    sections = build_sections(get_model(pair.student), pair.student_split, shapes, 0.25)
    adapters = [make_adapter(s.output_shape[1:], t.output_shape[1:])
                for s, t in zip(sections[:-1], teacher[:-1], strict=True)]
    x, y = tf.random.uniform((4, *pair.input_shape)), tf.constant([0, 1, 2, 3])
    opts = [keras.optimizers.Adam(1e-3) for _ in sections]
    _, logits, rep = section_kt_step(sections, adapters, opts, teacher_outputs(teacher, x), y, KtLoss())
    assert logits.shape == (4, 10) and rep.shape == (len(sections) - 1,)
    deployed = fold_student(sections, adapters)
    zoo = build_stages(get_model(pair.student), pair.input_shape, pair.student_split, 0.25)
    assert [m.count_params() for m in deployed] == [s.model.count_params() for s in zoo]
    np.testing.assert_allclose(forward(deployed, x), forward(chain(sections, adapters), x),
                               rtol=1e-3, atol=1e-4)


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# Student logits s, teacher logits t, labels y: KL(p_t || p_s) != KL(p_s || p_t) here.
_S = np.array([[1.0, 0.0, -1.0], [0.5, 2.0, 0.0]], np.float32)
_T = np.array([[0.0, 2.0, 0.0], [3.0, -1.0, 1.0]], np.float32)
_Y = np.array([0, 1])


def _kd_by_hand(temperature, weight, reverse=False, factor=None):
    p_t, p_s = _softmax(_T / temperature), _softmax(_S / temperature)
    if reverse:
        p_t, p_s = p_s, p_t
    kl = np.mean(np.sum(p_t * (np.log(p_t) - np.log(p_s)), axis=1))  # KL(teacher || student)
    ce = np.mean(-np.log(_softmax(_S)[np.arange(2), _Y]))
    return (1 - weight) * ce + weight * (temperature**2 if factor is None else factor) * kl


@pytest.mark.parametrize(("temperature", "weight"), [(4.0, 0.5), (2.0, 1.0), (3.0, 0.3)])
def test_kd_loss_equals_hinton_by_hand(temperature, weight):
    """(1 - w) CE + w T^2 KL(softmax(t/T) || softmax(s/T)), by hand in numpy; a dropped T^2 or
    a reversed KL gives a value this example tells apart (its KL is asymmetric)."""
    got = float(kd_loss(tf.constant(_S), tf.constant(_T), tf.constant(_Y), temperature, weight))
    assert got == pytest.approx(_kd_by_hand(temperature, weight), rel=1e-5)
    for wrong in (_kd_by_hand(temperature, weight, reverse=True),
                  _kd_by_hand(temperature, weight, factor=1.0)):
        assert got != pytest.approx(wrong, rel=1e-3)


def test_kd_soft_gradient_is_t_times_the_probability_gap():
    """d/ds of T^2 KL(p_t || p_s) is T (p_s - p_t) per sample (divided by the batch size): the
    T^2 factor keeps soft-target gradients on the hard-label scale."""
    s = tf.constant(_S)
    for temperature in (1.0, 4.0):
        with tf.GradientTape() as tape:
            tape.watch(s)
            value = kd_loss(s, tf.constant(_T), tf.constant(_Y), temperature, 1.0)
        want = temperature * (_softmax(_S / temperature) - _softmax(_T / temperature)) / 2
        np.testing.assert_allclose(tape.gradient(value, s).numpy(), want, rtol=1e-4, atol=1e-6)


def test_representation_loss_by_hand_is_positive_and_training_lowers_it():
    pred = tf.constant([[1.0, -2.0], [0.0, 3.0]])
    target = tf.constant([[0.0, 0.0], [1.0, 1.0]])  # errors 1, -2, -1, 2
    assert float(representation_loss(pred, target, "mse")) == pytest.approx(2.5)
    assert float(representation_loss(pred, target, "l1")) == pytest.approx(1.5)
    # one SGD step of a linear section (identity adapter) moves its output toward the target
    keras.utils.set_random_seed(2)
    section = _seq((3,), keras.layers.Dense(2))
    adapter = _seq((2,), keras.layers.Identity())
    h, t = tf.random.normal((4, 3)), tf.random.normal((4, 2))
    w, b = section.get_weights()
    before = float(np.mean((h.numpy() @ w + b - t.numpy()) ** 2))
    value, _ = section_step(section, adapter, keras.optimizers.SGD(0.1), h, t, KtLoss())
    assert float(value) == pytest.approx(before, rel=1e-5) and before > 0
    # dL/dW = 2/(N*2) h^T (hW + b - t): the step is exactly that, downhill
    err = h.numpy() @ w + b - t.numpy()
    np.testing.assert_allclose(section.get_weights()[0], w - 0.1 * h.numpy().T @ err / 4,
                               rtol=1e-5, atol=1e-6)


def test_section_kt_with_teacher_inputs_feeds_each_section_the_teachers_activation():
    """Every section's loss of the step is the one on the teacher's input of that section (not
    on the previous student section's output), and the last section reads the teacher's too."""
    teacher, sections, adapters = _tiny_pair()
    x, y = tf.random.uniform((6, 8, 8, 1)), tf.constant([0, 1, 2, 3, 4, 5])
    outs = teacher_outputs(teacher, x)
    loss = KtLoss()
    want = [float(representation_loss(a(s(outs[i])), outs[i + 1]))
            for i, (s, a) in enumerate(zip(sections[:-1], adapters, strict=True))]
    chained = [float(v) for v in representation_loss(
        adapters[1](sections[1](adapters[0](sections[0](x)))), outs[2])[None]]
    want_last = float(kd_loss(sections[-1](outs[-2]), outs[-1], y, loss.temperature,
                              loss.kd_weight))
    opts = [keras.optimizers.SGD(0.0) for _ in sections]  # lr 0: values only
    value, _, rep = section_kt_step(sections, adapters, opts, outs, y, loss, 0.0)
    np.testing.assert_allclose(rep.numpy(), want, rtol=1e-5)
    assert float(value) == pytest.approx(want_last, rel=1e-5)
    assert abs(chained[0] - want[1]) > 1e-3 * want[1]  # the two inputs give different losses
    _, _, rep_student = section_kt_step(sections, adapters, opts, outs, y, loss, 1.0)
    assert float(rep_student[1]) == pytest.approx(chained[0], rel=1e-4)


def test_section_kt_with_a_student_share_mixes_the_two_inputs_in_each_batch():
    """student_share 0.5: the first half of the batch follows the student's own chain (its
    upstream errors included), the rest the teacher's clean section input; every section,
    the last one too."""
    teacher, sections, adapters = _tiny_pair()
    x, y = tf.random.uniform((6, 8, 8, 1)), tf.constant([0, 1, 2, 3, 4, 5])
    outs = teacher_outputs(teacher, x)
    loss = KtLoss()
    student_1 = adapters[0](sections[0](x))  # section 0 reads x either way
    mixed_1 = tf.concat([student_1[:3], outs[1][3:]], axis=0)
    want_1 = float(representation_loss(adapters[1](sections[1](mixed_1)), outs[2]))
    h = mixed_1
    for i in (1, 2):  # on to the last section's input, mixing again at every split
        h = tf.concat([adapters[i](sections[i](h))[:3], outs[i + 1][3:]], axis=0)
    want_last = float(kd_loss(sections[-1](h), outs[-1], y, loss.temperature, loss.kd_weight))
    opts = [keras.optimizers.SGD(0.0) for _ in sections]  # lr 0: values only
    value, _, rep = section_kt_step(sections, adapters, opts, outs, y, loss, 0.5)
    assert float(rep[1]) == pytest.approx(want_1, rel=1e-5)
    assert float(value) == pytest.approx(want_last, rel=1e-5)
    _, _, clean = section_kt_step(sections, adapters, opts, outs, y, loss, 0.0)
    assert abs(float(clean[1]) - want_1) > 1e-3 * want_1  # the mix is not the clean input


def _heads(adapters):
    return [AuxHead(tuple(a.output_shape[1:]), 10, depth=0) for a in adapters]


def test_progressive_step_reads_the_trained_student_chain_and_trains_only_its_section():
    """Section 2's loss is the one on the student's own chain (sections 0, 1 with adapters), not
    on the teacher's clean input; only section 2, its adapter and its head change."""
    teacher, sections, adapters = _tiny_pair()
    heads = _heads(adapters)
    x, y = tf.random.uniform((6, 8, 8, 1)), tf.constant([0, 1, 2, 3, 4, 5])
    outs = teacher_outputs(teacher, x)
    chained = adapters[1](sections[1](adapters[0](sections[0](x))))
    want = float(representation_loss(adapters[2](sections[2](chained)), outs[3]))
    clean = float(representation_loss(adapters[2](sections[2](outs[2])), outs[3]))
    models = [*sections, *adapters, *heads]
    before = [[v.numpy().copy() for v in m.trainable_variables] for m in models]
    value, logits = progressive_section_step(2, sections, adapters, keras.optimizers.Adam(1e-2),
                                             outs, y, KtLoss(), heads, 1.0)
    assert float(value) == pytest.approx(want, rel=1e-5)
    assert abs(clean - want) > 1e-3 * want
    assert logits.shape == (6, 10)
    changed = [any(not np.array_equal(a, v.numpy()) for a, v in zip(b, m.trainable_variables, strict=True))
               for b, m in zip(before, models, strict=True)]
    #            sections 0-3               adapters 0-2        heads 0-2
    assert changed == [False, False, True, False, False, False, True, False, False, True]


def test_progressive_last_section_trains_on_kd_over_the_student_chain():
    teacher, sections, adapters = _tiny_pair()
    x, y = tf.random.uniform((6, 8, 8, 1)), tf.constant([0, 1, 2, 3, 4, 5])
    outs = teacher_outputs(teacher, x)
    loss = KtLoss()
    h = x
    for s, a in zip(sections[:-1], adapters, strict=True):
        h = a(s(h))
    want = float(kd_loss(sections[-1](h), outs[-1], y, loss.temperature, loss.kd_weight))
    value, _ = progressive_section_step(3, sections, adapters, keras.optimizers.SGD(0.0), outs, y,
                                        loss)
    assert float(value) == pytest.approx(want, rel=1e-5)


def test_aux_head_adds_its_weighted_kd_loss_to_the_sections_gradient():
    """With lr-1 SGD the step is minus the gradient: the head's term at weight 2 moves the
    section exactly twice as far (beyond the representation loss) as at weight 1, and at weight
    0 the section moves as without a head."""
    moves = {}
    for weight in (0.0, 1.0, 2.0):
        teacher, sections, adapters = _tiny_pair()
        heads = _heads(adapters)
        x, y = tf.random.uniform((6, 8, 8, 1), seed=1), tf.constant([0, 1, 2, 3, 4, 5])
        outs = teacher_outputs(teacher, x)
        w0 = sections[1].trainable_variables[0].numpy().copy()
        aux = AuxTarget(heads[1], y, outs[-1], weight)
        section_step(sections[1], adapters[1], keras.optimizers.SGD(1.0), outs[1], outs[2],
                     KtLoss(), aux)
        moves[weight] = sections[1].trainable_variables[0].numpy() - w0
    head_1, head_2 = moves[1.0] - moves[0.0], moves[2.0] - moves[0.0]
    assert np.abs(head_1).max() > 1e-6
    np.testing.assert_allclose(head_2, 2 * head_1, rtol=1e-3, atol=1e-7)


def test_progressive_heads_lower_their_sections_loss_and_count_is_checked():
    teacher, sections, adapters = _tiny_pair()
    heads = _heads(adapters)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.uniform(size=(64, 8, 8, 1)).astype("float32"))
    y = tf.constant(rng.integers(0, 10, 64))
    outs = teacher_outputs(teacher, x)
    opt = keras.optimizers.Adam(3e-3)
    step = tf.function(lambda: progressive_section_step(0, sections, adapters, opt, outs, y,
                                                        KtLoss(), heads, 1.0))
    first = float(step()[0])
    for _ in range(60):
        last = float(step()[0])
    assert last < 0.5 * first, (first, last)
    with pytest.raises(ValueError, match="4 sections need 3 auxiliary heads"):
        progressive_section_step(0, sections, adapters, opt, outs, y, KtLoss(), heads[:1], 1.0)
