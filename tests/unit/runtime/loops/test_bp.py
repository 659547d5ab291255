"""The backprop stage loops against fake neighbours (real gRPC on port 0): micro-batches sent and
returned per step, and every update equal to the one computed here from the full batch."""

from __future__ import annotations

from itertools import islice
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from testbed.data.batches import batch_indices
from testbed.runtime.replica import build_replica, input_spec, output_spec
from testbed.runtime.wire.serde import Activation, Gradient
from testbed.spec.load import parse_spec
from testbed.testing.datasets import random_images
from testbed.testing.fake_peers import FakeParameterServer, FakeStage, Feeder, LoopWorker
from testbed.testing.specs import stage_spec
from testbed.training.session import Session, fetch_batch
from testbed.training.tfsetup import make_optimizer

STEPS, BATCH = 2, 8
MODES = [("bp-sync", 1), ("bp-pipeline", 4)]


def _spec(mode: str, micro: int, iterations: int = STEPS):
    return parse_spec(stage_spec(mode, iterations, job={"mode": mode, "micro_batches": micro}))


def _g(batch_id: int, shape: tuple[int, ...]) -> np.ndarray:
    """The gradient a fake downstream returns for a micro-batch (fixed per batch id)."""
    return np.random.default_rng(batch_id).normal(size=shape).astype(np.float32)


def _sgd(model, grads_at, steps: int) -> None:
    """The reference: `steps` updates of the spec's optimizer with grads_at(step) at the time."""
    spec_opt = make_optimizer("sgd", 0.05)
    for step in range(1, steps + 1):
        spec_opt.apply_gradients(zip(grads_at(step), model.trainable_variables, strict=True))


@pytest.mark.parametrize(("mode", "micro"), MODES)
def test_first_stage_sends_micro_batches_and_applies_the_sum_of_what_comes_back(
    tmp_path: Path, ps: FakeParameterServer, mode: str, micro: int
) -> None:
    spec, data = _spec(mode, micro), random_images()
    worker = LoopWorker(spec, tmp_path, "stage0", stage_ids=(0,), data=data)
    stage, size = worker.replica.stages[0], BATCH // micro
    back = worker.peer("downstream")

    def answer(act: Activation) -> None:  # the stage below returns each micro-batch's gradient
        back.backward(Gradient(act.batch_id, act.step, _g(act.batch_id, act.h.shape)))

    down = FakeStage(tmp_path, "down", in_spec=output_spec(stage), on_forward=answer)
    up = FakeStage(tmp_path, "up", grad_spec=input_spec(stage))
    try:
        assert worker.train({"downstream": down.address, "upstream": up.address,
                             "ps": ps.address}) == STEPS
    finally:
        back.close()
        for w in (worker, down, up):
            w.close()
    sent = down.forwards.items
    assert [(a.batch_id, a.step) for a in sent] == [
        ((s - 1) * micro + k, s) for s in range(1, STEPS + 1) for k in range(micro)]
    assert all(a.h.shape == (size, *stage.output_shape) for a in sent)
    batches = list(islice(batch_indices(len(data.y_train), BATCH, spec.training.seed), STEPS))
    labels = np.concatenate([data.y_train[idx] for idx in batches])
    assert np.array_equal(np.concatenate([a.labels for a in sent]), labels)
    assert up.backwards.items == []  # nothing goes above the first stage

    reference = build_replica(spec).stages[0].model

    def grads_at(step: int) -> list[tf.Tensor]:  # sum over micro-batches of J_k^T g_k
        x = data.x_train[batches[step - 1]]
        with tf.GradientTape() as tape:
            total = tf.add_n([
                tf.reduce_sum(reference(x[k * size:(k + 1) * size], training=True)
                              * _g((step - 1) * micro + k, (size, *stage.output_shape)))
                for k in range(micro)])
        return tape.gradient(total, reference.trainable_variables)

    _sgd(reference, grads_at, STEPS)
    for got, want in zip(stage.model.get_weights(), reference.get_weights(), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(("mode", "micro"), MODES)
def test_last_stage_update_is_the_full_batch_gradient_whatever_the_micro_batches(
    tmp_path: Path, ps: FakeParameterServer, mode: str, micro: int
) -> None:
    """GPipe's last stage with SGD: M micro-batch gradients averaged = one full-batch step; the
    gradients it returns are the full-batch loss's rows of each micro-batch."""
    spec = _spec(mode, micro)
    worker = LoopWorker(spec, tmp_path, "stage1", stage_ids=(1,))
    stage, size = worker.replica.stages[1], BATCH // micro
    rng = np.random.default_rng(3)
    full = [(rng.random((BATCH, *stage.input_shape), np.float32),
             rng.integers(0, 10, BATCH).astype(np.int64)) for _ in range(STEPS)]
    messages = [Activation((s - 1) * micro + k, s, h[k * size:(k + 1) * size],
                           y[k * size:(k + 1) * size])
                for s, (h, y) in enumerate(full, start=1) for k in range(micro)]
    up = FakeStage(tmp_path, "up", grad_spec=input_spec(stage))
    feeder = Feeder(worker, messages)
    reference = build_replica(spec).stages[1].model
    h0 = tf.constant(full[0][0])
    with tf.GradientTape() as tape:
        tape.watch(h0)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=full[0][1], logits=reference(h0, training=True)))
    first_grad = tape.gradient(loss, h0).numpy()
    try:
        assert worker.train({"upstream": up.address, "ps": ps.address}) == STEPS
        feeder.join()
    finally:
        for w in (worker, up):
            w.close()
    back = up.backwards.items
    assert [(g.batch_id, g.step) for g in back] == [(m.batch_id, m.step) for m in messages]
    assert all(g.g.shape == (size, *stage.input_shape) for g in back)
    np.testing.assert_allclose(np.concatenate([g.g for g in back[:micro]]), first_grad,
                               rtol=1e-4, atol=1e-7)

    def grads_at(step: int) -> list[tf.Tensor]:
        h, y = full[step - 1]
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=y, logits=reference(h, training=True)))
        return tape.gradient(loss, reference.trainable_variables)

    _sgd(reference, grads_at, STEPS)
    for got, want in zip(stage.model.get_weights(), reference.get_weights(), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    assert ps.latest(1).version == STEPS


def test_local_bp_equals_the_in_process_run_and_sends_only_weights(
    tmp_path: Path, ps: FakeParameterServer
) -> None:
    spec, data = parse_spec(stage_spec("bp-local", 3)), random_images()
    worker = LoopWorker(spec, tmp_path, "local", stage_ids=(0, 1), data=data)
    try:
        assert worker.train({"ps": ps.address}) == 3
    finally:
        worker.close()
    session = Session.build(spec, data)
    step = session.compile_step()
    for idx in islice(batch_indices(len(data.y_train), BATCH, spec.training.seed), 3):
        step(*fetch_batch(data, idx))
    for i, stage in enumerate(session.stages):
        pushed = ps.latest(i)
        assert pushed.version == 3
        for got, want in zip(pushed.tensors.values(), stage.model.get_weights(), strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    assert {w.version for w in ps.pushed} == {3}  # eval_every = 3: one push per stage, at the end
