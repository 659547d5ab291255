"""The SG stage loop against fake neighbours (real gRPC on port 0): what it sends per step, that
its stage and SG module both learn, and that the last stage returns the per-sample gradient."""

from __future__ import annotations

from itertools import islice
from pathlib import Path

import numpy as np
import tensorflow as tf

from testbed.data.batches import batch_indices
from testbed.runtime.replica import build_replica, input_spec, output_spec
from testbed.runtime.wire.serde import Activation, Gradient
from testbed.spec.load import parse_spec
from testbed.testing.datasets import random_images
from testbed.testing.fake_peers import (
    FakeParameterServer,
    FakeStage,
    Feeder,
    LoopWorker,
    activations,
)
from testbed.testing.specs import stage_spec

STEPS, BATCH = 6, 8


def _weights(model) -> list[np.ndarray]:
    return [w.copy() for w in model.get_weights()]


def _changed(before: list[np.ndarray], model) -> bool:
    return any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))


def _answer_with_targets(worker: LoopWorker, shape: tuple[int, ...]):
    """on_forward for a fake downstream: reply to every activation at once (before its Ack)
    with a fixed per-batch target, over gRPC, as the next stage would."""
    peer = worker.peer("downstream")

    def answer(act: Activation) -> None:
        g = np.random.default_rng(act.batch_id).normal(size=(len(act.labels), *shape))
        peer.backward(Gradient(act.batch_id, act.step, g.astype(np.float32)))

    return answer, peer


def test_first_stage_sends_each_batch_once_in_order_and_learns_from_late_targets(
    tmp_path: Path, ps: FakeParameterServer
) -> None:
    spec = parse_spec(stage_spec("sg", STEPS))
    data = random_images()
    worker = LoopWorker(spec, tmp_path, "stage0", stage_ids=(0,), data=data)
    stage, sg = worker.replica.stages[0], worker.replica.sgs[0]
    answer, back = _answer_with_targets(worker, stage.output_shape)
    down = FakeStage(tmp_path, "down", in_spec=output_spec(stage), on_forward=answer)
    up = FakeStage(tmp_path, "up", grad_spec=input_spec(stage))
    before, sg_before = _weights(stage.model), _weights(sg)
    try:
        version = worker.train({"downstream": down.address, "upstream": up.address,
                                "ps": ps.address})
    finally:
        back.close()
        for w in (worker, down, up):
            w.close()
    assert version == STEPS
    sent = down.forwards.items
    assert [a.batch_id for a in sent] == list(range(1, STEPS + 1))
    assert [a.final for a in sent] == [False] * (STEPS - 1) + [True]
    assert all(a.h.shape == (BATCH, *stage.output_shape) for a in sent)
    order = islice(batch_indices(len(data.y_train), BATCH, spec.training.seed), STEPS)
    assert all(np.array_equal(a.labels, data.y_train[idx]) for a, idx in zip(sent, order))
    assert up.backwards.items == []  # the first stage has nothing to send back
    assert _changed(sg_before, sg), "the SG module never learned from its targets"
    assert _changed(before, stage.model), "the stage never moved (its SG module predicts 0)"
    final = ps.latest(0)
    assert final.version == STEPS
    for got, want in zip(final.tensors.values(), stage.model.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)


def test_middle_stage_sends_forward_and_its_input_gradient_back(
    tmp_path: Path, ps: FakeParameterServer
) -> None:
    spec = parse_spec(stage_spec("sg", STEPS, split=("conv1", "fc1")))
    worker = LoopWorker(spec, tmp_path, "stage1", stage_ids=(1,))
    stage, sg = worker.replica.stages[1], worker.replica.sgs[1]
    answer, back = _answer_with_targets(worker, stage.output_shape)
    down = FakeStage(tmp_path, "down", in_spec=output_spec(stage), on_forward=answer)
    up = FakeStage(tmp_path, "up", grad_spec=input_spec(stage))
    feeder = Feeder(worker, activations(stage.input_shape, STEPS, BATCH))
    before, sg_before = _weights(stage.model), _weights(sg)
    try:
        version = worker.train({"downstream": down.address, "upstream": up.address,
                                "ps": ps.address})
        feeder.join()
    finally:
        back.close()
        for w in (worker, down, up):
            w.close()
    assert version == STEPS
    assert [a.batch_id for a in down.forwards.items] == list(range(1, STEPS + 1))
    deltas = up.backwards.items
    assert [g.batch_id for g in deltas] == list(range(1, STEPS + 1))
    assert all(g.g.shape == (BATCH, *stage.input_shape) for g in deltas)
    assert not deltas[0].g.any()  # a fresh SG module predicts 0, so the first target is 0 too
    assert any(g.g.any() for g in deltas[1:]), "no target ever passed back through the stage"
    assert _changed(sg_before, sg) and _changed(before, stage.model)


def test_last_stage_returns_the_per_sample_gradient_and_sends_nothing_forward(
    tmp_path: Path, ps: FakeParameterServer
) -> None:
    spec = parse_spec(stage_spec("sg", STEPS))
    worker = LoopWorker(spec, tmp_path, "stage1", stage_ids=(1,))
    stage = worker.replica.stages[1]
    reference = build_replica(spec).stages[1].model  # the same seeded initial weights
    up = FakeStage(tmp_path, "up", grad_spec=input_spec(stage))
    messages = activations(stage.input_shape, STEPS, BATCH)
    feeder = Feeder(worker, messages)
    before = _weights(stage.model)
    try:
        version = worker.train({"upstream": up.address, "ps": ps.address})
        feeder.join()
    finally:
        for w in (worker, up):
            w.close()
    assert version == STEPS
    targets = up.backwards.items
    assert [g.batch_id for g in targets] == list(range(1, STEPS + 1))
    assert all(g.g.shape == (BATCH, *stage.input_shape) for g in targets)
    h = tf.constant(messages[0].h)
    with tf.GradientTape() as tape:  # d(sum of per-sample losses)/dh = batch * dL/dh
        tape.watch(h)
        total = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=messages[0].labels, logits=reference(h)))
    np.testing.assert_allclose(targets[0].g, tape.gradient(total, h).numpy(),
                               rtol=1e-4, atol=1e-6)
    assert _changed(before, stage.model)
    assert ps.latest(1).version == STEPS
