"""The local-loss stage loop against fake neighbours (real gRPC on port 0): it forwards every
batch once, sends nothing back, and steps its stage and head exactly as the in-process
reference (`algorithms.local.local_stage_step`) does on the same activations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from testbed.algorithms.local import local_stage_step
from testbed.runtime.replica import build_replica, input_spec, output_spec
from testbed.spec.load import parse_spec
from testbed.testing.fake_peers import (
    FakeParameterServer,
    FakeStage,
    Feeder,
    LoopWorker,
    activations,
)
from testbed.testing.specs import stage_spec

STEPS, BATCH = 5, 8


def test_middle_stage_forwards_its_output_sends_nothing_back_and_steps_on_its_head(
    tmp_path: Path, ps: FakeParameterServer
) -> None:
    spec = parse_spec(stage_spec("local", STEPS, split=("conv1", "fc1")))
    worker = LoopWorker(spec, tmp_path, "stage1", stage_ids=(1,))
    stage, head = worker.replica.stages[1], worker.replica.heads[1]
    assert worker.node.grads is None  # the worker has no buffer for backward messages at all
    down = FakeStage(tmp_path, "down", in_spec=output_spec(stage))
    up = FakeStage(tmp_path, "up", grad_spec=input_spec(stage))  # would record any Backward
    messages = activations(stage.input_shape, STEPS, BATCH)
    feeder = Feeder(worker, messages)
    try:
        version = worker.train({"downstream": down.address, "upstream": up.address,
                                "ps": ps.address})
        feeder.join()
    finally:
        for w in (worker, down, up):
            w.close()
    assert version == STEPS
    assert up.backwards.items == []  # not one backward message
    sent = down.forwards.items
    assert [a.batch_id for a in sent] == list(range(1, STEPS + 1))
    assert [a.final for a in sent] == [False] * (STEPS - 1) + [True]

    ref = build_replica(spec)  # the same seeded stage and head, stepped in process
    model, ref_head = ref.stages[1].model, ref.heads[1]
    opt, head_opt = ref.optimizers[1], ref.head_optimizers[1]  # SGD as the spec makes it
    for msg, got in zip(messages, sent, strict=True):
        h_out, _ = local_stage_step([model], ref_head, [opt], head_opt,
                                    tf.constant(msg.h), tf.constant(msg.labels))
        np.testing.assert_allclose(got.h, h_out.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(got.labels, msg.labels)
    for got_w, want_w, start in zip(stage.model.get_weights(), model.get_weights(),
                                    build_replica(spec).stages[1].model.get_weights(),
                                    strict=True):
        assert not np.array_equal(want_w, start) or not want_w.any()  # the stage moved
        np.testing.assert_allclose(got_w, want_w, rtol=1e-5, atol=1e-6)
    for got_w, want_w in zip(head.get_weights(), ref_head.get_weights(), strict=True):
        np.testing.assert_allclose(got_w, want_w, rtol=1e-5, atol=1e-6)
    final = ps.latest(1)
    assert final.version == STEPS
    for got_w, want_w in zip(final.tensors.values(), model.get_weights(), strict=True):
        np.testing.assert_allclose(got_w, want_w, rtol=1e-5, atol=1e-6)
