"""The parameter server over real gRPC: versions, evaluation, checkpoints, async gradients."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from testbed.runtime.checkpoints import load_checkpoint
from testbed.runtime.parameter_server import ParameterServer, grad_specs
from testbed.runtime.peers import ParameterClient, PeerError
from testbed.runtime.replica import get_named_weights, weight_specs
from testbed.runtime.wire import serde_ps
from testbed.runtime.wire.serde import Weights
from testbed.runtime.wire.serde_ps import ModelWeights
from testbed.spec.load import parse_spec
from testbed.testing.datasets import random_images
from testbed.testing.parameter_server import serving


@pytest.fixture
def ps(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[ParameterServer, ParameterClient]]:
    mode = getattr(request, "param", "bp-sync")
    spec = parse_spec(
        {
            "name": "t",
            "model": {"name": "four-layer", "split_after": ["conv1"], "width": 0.25},
            "algorithm": {"name": "bp"},
            "training": {"iterations": 3, "batch_size": 8, "eval_every": 2, "log_every": 1},
            "job": {"mode": mode, "store": {"target_staleness": 1}},
        }
    )
    with serving(spec, random_images(), tmp_path) as (server, address):
        client = ParameterClient(address, 10.0, None)
        yield server, client
        client.close()


def _wait_for_eval(client: ParameterClient, step: int) -> list:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        evals = client.status().evaluations
        if any(e.step == step for e in evals):
            return list(evals)
        time.sleep(0.05)
    raise AssertionError(f"no evaluation of step {step} within 30 s")


def test_complete_version_is_evaluated_and_checkpointed(ps, tmp_path: Path) -> None:
    server, client = ps
    weights = [get_named_weights(s.model) for s in server.replica.stages]
    client.push_weights(Weights(0, 5, weights[0]))
    assert client.status().version == 0  # stage 1 has not pushed version 5 yet
    before = time.time() - server.t0
    client.push_weights(Weights(1, 5, weights[1]))
    after = time.time() - server.t0
    evals = _wait_for_eval(client, 5)
    assert 0.0 <= evals[0].test_accuracy <= 1.0
    # ready_s: when the last stage's weights made version 5 complete, not when evaluation ended
    assert before <= evals[0].ready_s <= after <= evals[0].wall_s
    version, stages = load_checkpoint(tmp_path / "checkpoint")
    assert version == 5
    for saved, pushed in zip(stages, weights, strict=True):
        for a, b in zip(saved, pushed.values(), strict=True):
            np.testing.assert_array_equal(a, b)


def test_weights_of_the_wrong_shape_are_rejected(ps) -> None:
    server, client = ps
    weights = get_named_weights(server.replica.stages[0].model)
    name = next(iter(weights))
    with pytest.raises(PeerError, match=r"INVALID_ARGUMENT: .*shape: got"):
        client.push_weights(Weights(0, 1, {**weights, name: np.zeros((1, 1), np.float32)}))
    with pytest.raises(PeerError, match=r"INVALID_ARGUMENT: stage_id: got 7, expected 0..1"):
        client.push_weights(Weights(7, 1, weights))


@pytest.mark.parametrize("ps", ["dp-async"], indirect=True)
def test_async_steps_are_handed_out_applied_and_stale_ones_handed_out_again(ps) -> None:
    """iterations=3: three tickets, a stale push returns its step, unknown tickets are refused."""
    server, client = ps
    specs = [weight_specs(s.model) for s in server.replica.stages]

    def zeros(version: int, ticket: int) -> ModelWeights:
        return ModelWeights(version, tuple(
            Weights(i, version,
                    {n: np.zeros(s.shape, np.float32) for n, s in grad_specs(st.model).items()})
            for i, st in enumerate(server.replica.stages)
        ), ticket)  # fmt: skip

    def pull() -> tuple[int, int]:
        msg = client.pull_model()
        if msg.ticket:
            assert len(serde_ps.model_from_message(msg, specs).stages) == 2
        else:  # no weights without a step, in flight elsewhere or all applied
            assert len(msg.stages) == 0
        return msg.version, msg.ticket

    (v1, t1), (v2, t2), (v3, t3) = pull(), pull(), pull()
    assert (v1, v2, v3) == (0, 0, 0) and sorted((t1, t2, t3)) == [1, 2, 3]
    assert pull() == (0, 0)  # all three in flight: none free, the run is not over
    client.push_gradients(zeros(v1, t1))
    client.push_gradients(zeros(v2, t2))
    assert client.status().version == 2
    client.push_gradients(zeros(v3, t3))  # 2 versions old > target_staleness 1: refused
    assert client.status().stale_gradients == 1
    v4, t4 = pull()
    assert (v4, t4) == (2, t3)  # the refused step is handed out again
    with pytest.raises(PeerError, match=r"INVALID_ARGUMENT: ticket: got 99"):
        client.push_gradients(zeros(v4, 99))
    client.push_gradients(zeros(v4, t4))
    with pytest.raises(PeerError, match=r"INVALID_ARGUMENT: ticket: got 3"):
        client.push_gradients(zeros(v4, t4))  # settled already
    assert client.status().version == 3
    assert pull() == (3, 0)  # all applied: the replicas stop
    assert [e.step for e in _wait_for_eval(client, 3)] == [2, 3]


def test_warmed_appliers_step_exactly_as_fresh_ones() -> None:
    """The server traces its optimizer steps before it is ready (zero gradients, then weights and
    optimizer state put back): the steps that follow equal those of a server that never warmed."""
    import tensorflow as tf

    from testbed.runtime.appliers import make_appliers, warm_appliers
    from testbed.runtime.replica import build_replica

    spec = parse_spec({
        "name": "t", "model": {"name": "four-layer", "split_after": ["conv1"], "width": 0.25},
        "algorithm": {"name": "bp"}, "training": {"iterations": 3, "batch_size": 8,
                                                  "optimizer": "adam", "lr": 0.01},
        "job": {"mode": "dp-async"}})  # fmt: skip
    warmed, fresh = build_replica(spec), build_replica(spec)
    warm, plain = make_appliers(warmed), make_appliers(fresh)
    warm_appliers(warm, warmed)
    assert all(a.experimental_get_tracing_count() == 1 for a in warm)  # traced before any push
    rng = np.random.default_rng(0)
    for _ in range(2):  # Adam's bias correction counts steps: a kept warm-up step shows here
        for i, stage in enumerate(warmed.stages):
            grads = [rng.normal(size=v.shape).astype(np.float32)
                     for v in stage.model.trainable_variables]  # fmt: skip
            warm[i]([tf.constant(g) for g in grads])
            plain[i]([tf.constant(g) for g in grads])
    for a, b in zip(warmed.stages, fresh.stages, strict=True):
        for x, y in zip(a.model.weights, b.model.weights, strict=True):
            np.testing.assert_allclose(x.numpy(), y.numpy(), rtol=0, atol=1e-7)
