"""The kt-sections loops against fake peers (real gRPC on port 0): the teacher streams each
section its own input and target; a student worker steps every section it holds, sends nothing."""

from __future__ import annotations

from itertools import islice
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from testbed.algorithms.kt import kd_loss
from testbed.data.batches import batch_indices
from testbed.models import build_stages, get_model
from testbed.runtime.kt_replica import section_specs
from testbed.runtime.wire.serde import Activation
from testbed.spec.experiment import Spec
from testbed.spec.load import parse_spec
from testbed.testing.datasets import random_images
from testbed.testing.fake_peers import FakeParameterServer, FakeStage, Feeder, LoopWorker
from testbed.training.kt_trainables import build_student, save_teacher
from testbed.training.tfsetup import make_optimizer

STEPS, BATCH = 3, 8


@pytest.fixture
def spec(tmp_path: Path) -> Spec:
    """Section-kt of a half-width four-layer teacher (saved, as the controller saves it) into a
    quarter-width four-layer student, both cut after conv1."""
    teacher = [s.model for s in build_stages(get_model("four-layer"), (28, 28, 1), ["conv1"], 0.5)]
    save_teacher(teacher, tmp_path / "teacher.keras", {})
    return parse_spec({
        "name": "loop-kt",
        "model": {"name": "four-layer", "split_after": ["conv1"], "width": 0.25},
        "algorithm": {"name": "kt", "kt": {"method": "section-kt",
                                           "teacher": str(tmp_path / "teacher.keras")}},
        "training": {"batch_size": BATCH, "optimizer": "sgd", "lr": 0.05, "iterations": STEPS,
                     "eval_every": STEPS, "log_every": 1},
        "job": {"mode": "kt-sections"},
    })


def test_teacher_sends_every_section_its_input_and_target_each_batch(
    tmp_path: Path, ps: FakeParameterServer, spec: Spec
) -> None:
    data = random_images()
    worker = LoopWorker(spec, tmp_path, "teacher", role="teacher", data=data)
    teacher = worker.replica.kt.teacher
    students = [FakeStage(tmp_path, f"edge{i}", section_specs=section_specs(teacher, (i,)))
                for i in range(2)]
    peers = {"ps": ps.address, **{f"stage{i}@edge{i}": s.address for i, s in enumerate(students)}}
    try:
        assert worker.train(peers) == STEPS
    finally:
        for w in (worker, *students):
            w.close()
    batches = islice(batch_indices(len(data.y_train), BATCH, spec.training.seed), STEPS)
    for step, idx in enumerate(batches, start=1):
        x = data.x_train[idx]
        h1 = teacher[0](x, training=False).numpy()
        logits = teacher[1](h1, training=False).numpy()
        for i, (h, target) in enumerate([(x, h1), (h1, logits)]):
            msg = students[i].forwards.items[step - 1]
            assert (msg.batch_id, msg.stage_id, msg.final) == (step, i, step == STEPS)
            np.testing.assert_allclose(msg.h, h, rtol=1e-5, atol=1e-6)  # the teacher's input
            np.testing.assert_allclose(msg.target, target, rtol=1e-5, atol=1e-6)
            assert np.array_equal(msg.labels, data.y_train[idx])
    assert all(len(s.forwards.items) == STEPS for s in students)
    assert ps.pushed == []  # the teacher trains nothing


def test_student_steps_each_held_section_on_the_teachers_stream_and_sends_nothing(
    tmp_path: Path, ps: FakeParameterServer, spec: Spec
) -> None:
    """Both sections on one worker, fed as the teacher feeds them, with SGD: each section (with
    its adapter) ends where SGD on its own loss by hand puts it."""
    worker = LoopWorker(spec, tmp_path, "edge0", stage_ids=(0, 1))
    teacher = worker.replica.kt.teacher
    rng = np.random.default_rng(1)
    stream = []
    for step in range(1, STEPS + 1):
        x = rng.random((BATCH, 28, 28, 1), np.float32)
        y = rng.integers(0, 10, BATCH).astype(np.int64)
        h1 = teacher[0](x, training=False).numpy()
        logits = teacher[1](h1, training=False).numpy()
        stream += [Activation(step, step, x, y, step == STEPS, h1, 0),
                   Activation(step, step, h1, y, step == STEPS, logits, 1)]
    feeder = Feeder(worker, stream)
    try:
        assert worker.train({"ps": ps.address}) == STEPS
        feeder.join()
    finally:
        worker.close()

    ref = build_student(spec, teacher, (28, 28, 1))  # the same seeded initial student
    section0 = [*ref.sections[0].trainable_variables, *ref.adapters[0].trainable_variables]
    section1 = ref.sections[1].trainable_variables
    opts = [make_optimizer("sgd", 0.05) for _ in range(2)]
    for s0, s1 in zip(stream[::2], stream[1::2], strict=True):
        with tf.GradientTape() as tape:  # mean squared error to the teacher's output
            pred = ref.adapters[0](ref.sections[0](s0.h, training=True), training=True)
            mse = tf.reduce_mean(tf.square(pred - s0.target))
        opts[0].apply_gradients(zip(tape.gradient(mse, section0), section0, strict=True))
        with tf.GradientTape() as tape:
            kd = kd_loss(ref.sections[1](s1.h, training=True), s1.target, s1.labels, 4.0, 0.5)
        opts[1].apply_gradients(zip(tape.gradient(kd, section1), section1, strict=True))
    got = worker.replica.kt.student
    for mine, want in [(got.sections[0], ref.sections[0]), (got.adapters[0], ref.adapters[0]),
                       (got.sections[1], ref.sections[1])]:
        for a, b in zip(mine.get_weights(), want.get_weights(), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    assert {(w.stage_id, w.version) for w in ps.pushed} == {(0, STEPS), (1, STEPS)}
