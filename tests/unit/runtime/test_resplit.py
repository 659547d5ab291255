"""Re-split pieces without workers: the split table, the parameter server's epochs over real
gRPC, and a worker replica regrouped from what the server assembles."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from testbed.algorithms.bp import forward
from testbed.algorithms.sg import sg_module_step, sg_stage_step
from testbed.runtime.parameter_server import ParameterServer
from testbed.runtime.peers import ParameterClient, PeerError
from testbed.runtime.replica import build_replica, get_named_weights, weight_specs
from testbed.runtime.resplit import (
    ModuleMove,
    module_moves,
    module_state,
    module_state_specs,
    regroup,
    stage_ends,
    stages_for,
    unit_output_shapes,
)
from testbed.runtime.splits import SplitError, SplitTable
from testbed.runtime.wire.serde import Resplit, Weights
from testbed.spec.load import parse_spec
from testbed.testing.datasets import random_images
from testbed.testing.parameter_server import serving

# four-layer units: conv1_conv1 (2 weights), conv1_pool (0), fc1 (2), fc2 (2), fc3 (2)
SPEC = parse_spec({
    "name": "t", "model": {"name": "four-layer", "split_after": ["conv1_conv1", "fc1"],
                           "width": 0.25},
    "algorithm": {"name": "sg"},
    "training": {"iterations": 10, "batch_size": 4, "eval_every": 5, "eval_samples": 64},
    "job": {"mode": "sg"},
})


def test_split_table_slices_stage_weights_by_unit() -> None:
    table = SplitTable.initial([2, 0, 2, 2, 2], [0, 2, 4])
    assert [list(table.units(0, s)) for s in range(3)] == [[0], [1, 2], [3, 4]]
    units = table.to_units(0, 1, ["k1", "b1"])
    assert units == {1: [], 2: ["k1", "b1"]}
    table = table.with_epoch(1, [2, 3, 4])
    assert table.from_units(1, 0, {0: ["k0", "b0"], 1: [], 2: ["k1", "b1"]}) == [
        "k0", "b0", "k1", "b1"]
    with pytest.raises(SplitError, match="got 1 weights, expected 4"):
        table.to_units(1, 0, ["k0"])
    with pytest.raises(SplitError, match=r"split epoch: got 1, expected > 1"):
        table.with_epoch(1, [0, 1, 4])
    with pytest.raises(SplitError, match="got 2 stages, expected 3"):
        table.with_epoch(2, [1, 4])
    with pytest.raises(SplitError, match="ending with the last unit 4"):
        table.with_epoch(2, [0, 1, 3])
    with pytest.raises(SplitError, match=r"split epoch: got 5, expected one of \[0, 1\]"):
        table.units(5, 0)


@pytest.fixture
def ps(tmp_path: Path) -> Iterator[tuple[ParameterServer, ParameterClient]]:
    with serving(SPEC, random_images(), tmp_path) as (server, address):
        client = ParameterClient(address, 10.0, None)
        yield server, client
        client.close()


def test_units_move_through_the_parameter_server_to_a_new_split(ps) -> None:
    server, client = ps
    old = build_replica(SPEC)  # a worker's copy: its stages trained a little (weights perturbed)
    rng = np.random.default_rng(1)
    for s in old.stages:
        s.model.set_weights([w + rng.normal(0, 0.1, w.shape).astype(w.dtype)
                             for w in s.model.get_weights()])
    x = tf.constant(random_images(8).x_test)
    before = forward([s.model for s in old.stages], x).numpy()
    for i, s in enumerate(old.stages):
        client.push_weights(Weights(i, 7, get_named_weights(s.model)))
    ends = (2, 3, 4)  # conv + pool + fc1 | fc2 | fc3
    client.resplit(Resplit(1, ends))
    new_stages = stages_for(old, ends)
    for i, stage in enumerate(new_stages):
        assert client.pull_weights(i, 8, 1, weight_specs(stage.model)) is None  # not at 8 yet
        pulled = client.pull_weights(i, 7, 1, weight_specs(stage.model))
        assert pulled is not None and pulled.split_epoch == 1
        stage.model.set_weights(list(pulled.tensors.values()))
    after = forward([s.model for s in new_stages], x).numpy()
    np.testing.assert_allclose(after, before, rtol=1e-6, atol=1e-6)  # the same network
    # a push in the new split completes a version the evaluator scores in the spec's split
    for i, stage in enumerate(new_stages):
        client.push_weights(Weights(i, 9, get_named_weights(stage.model), split_epoch=1))
    deadline = time.monotonic() + 30
    while not any(e.step == 9 for e in client.status().evaluations):
        assert time.monotonic() < deadline, "version 9 never evaluated"
        time.sleep(0.05)
    with pytest.raises(PeerError, match="INVALID_ARGUMENT: .*expected"):  # epoch-0 shapes in epoch 1
        client.push_weights(Weights(0, 10, get_named_weights(old.stages[0].model), split_epoch=1))
    with pytest.raises(PeerError, match="INVALID_ARGUMENT: split epoch: got 1, expected > 1"):
        client.resplit(Resplit(1, ends))


def test_regroup_installs_the_stage_and_the_moved_units_train() -> None:
    replica = build_replica(SPEC)
    weights = {w.name: w for s in replica.stages for w in s.model.weights}  # noqa: F841
    ends = (2, 3, 4)
    stages = stages_for(replica, ends)
    pulled = get_named_weights(stages[0].model)
    old_sg = replica.sgs[0]
    moved = regroup(replica, 0, stages, pulled)
    assert moved.units and moved.new_sg and replica.sgs[0] is not old_sg  # the boundary moved: a new module, (64,)
    assert replica.sgs[0].act_shape == stages[0].output_shape == (64,)
    assert replica.stages[1].units == ("fc2",)
    model, opt = replica.stages[0].model, replica.optimizers[0]
    fc1_kernel = model.trainable_variables[-2]
    start = fc1_kernel.numpy().copy()
    x = tf.constant(random_images(4).x_train)
    y1h = tf.one_hot(tf.range(4) % 10, 10)
    replica.sgs[0].out.kernel.assign(tf.ones_like(replica.sgs[0].out.kernel))  # nonzero gradient
    sg_stage_step(model, replica.sgs[0], opt, x, y1h, input_grad=False)
    assert not np.allclose(fc1_kernel.numpy(), start)  # the moved unit is trained where it went


def test_a_stage_that_keeps_its_units_keeps_its_state() -> None:
    replica = build_replica(SPEC)  # stages (conv1_conv1), (conv1_pool, fc1), (fc2, fc3)
    kept, opt, sg = replica.stages[0], replica.optimizers[0], replica.sgs[0]
    stages = stages_for(replica, (0, 3, 4))  # stage 0 unchanged, fc2 moves to stage 1
    moved = regroup(replica, 0, stages, {})
    assert not moved.units and not moved.new_sg and replica.stages[0] is kept
    assert replica.optimizers[0] is opt and replica.sgs[0] is sg
    assert replica.stages[1].units == ("conv1_pool", "fc1", "fc2")  # the others take the new split


# --- carrying a surviving boundary's SG module to its new owner ---------------------------------
def test_module_moves_follow_the_boundary_not_the_stage_id() -> None:
    # the test run's re-split: fc1 (unit 2) stays a boundary but moves from stage 1 to stage 0;
    # conv1_conv1's boundary (0) goes, fc2's (3) is new
    assert [module_moves((0, 2, 4), (2, 3, 4), i) for i in range(3)] == [
        ModuleMove(push=None, pull=2), ModuleMove(push=2, pull=None), ModuleMove(None, None)]
    # every boundary shifts one stage down: stage i takes stage i+1's module, never its own
    assert [module_moves((1, 3, 5, 7), (3, 5, 6, 7), i) for i in range(4)] == [
        ModuleMove(None, 3), ModuleMove(3, 5), ModuleMove(5, None), ModuleMove(None, None)]
    # and up: stage 2 takes stage 1's boundary 3, stage 1 stage 0's 1; 5 goes, 0 is new
    assert [module_moves((1, 3, 5, 7), (0, 1, 3, 7), i) for i in range(4)] == [
        ModuleMove(1, None), ModuleMove(3, 1), ModuleMove(None, 3), ModuleMove(None, None)]
    # a stage that ends where it ended keeps its module in place; the new boundary is fresh
    assert module_moves((0, 2, 4), (1, 2, 4), 1) == ModuleMove(None, None)
    assert module_moves((0, 2, 4), (1, 2, 4), 0) == ModuleMove(None, None)


def test_every_carried_module_is_pushed_by_its_old_owner_alone() -> None:
    rng = np.random.default_rng(0)
    for _ in range(300):
        units = int(rng.integers(3, 12))
        stages = int(rng.integers(2, units + 1))
        old, new = ([*sorted(rng.choice(units - 1, stages - 1, replace=False)), units - 1]
                    for _ in range(2))
        moves = [module_moves(old, new, i) for i in range(stages)]
        pushed = {m.push: i for i, m in enumerate(moves) if m.push is not None}
        pulled = {m.pull: i for i, m in enumerate(moves) if m.pull is not None}
        assert pushed.keys() == pulled.keys() == {u for u in set(old[:-1]) & set(new[:-1])
                                                   if old.index(u) != new.index(u)}
        for u in pushed:
            assert (pushed[u], pulled[u]) == (old.index(u), new.index(u))


def _trained_module(replica, index: int) -> None:
    """A few regression steps of stage `index`'s SG module (weights and Adam moments move)."""
    sg, opt = replica.sgs[index], replica.sg_optimizers[index]
    rng = np.random.default_rng(2)
    for _ in range(3):
        h = tf.constant(rng.normal(size=(4, *sg.act_shape)).astype("float32"))
        sg_module_step(sg, opt, h, tf.one_hot(tf.range(4) % 10, 10), h * 0.1)


def test_regroup_restores_the_carried_module_and_its_optimizer() -> None:
    old = build_replica(SPEC)  # stage 1 (conv1_pool, fc1) ends at fc1: its module is (64,)
    _trained_module(old, 1)
    carried = module_state(old.sgs[1], old.sg_optimizers[1])
    replica = build_replica(SPEC)  # stage 0's worker: it takes fc1 and fc1's boundary
    stages = stages_for(replica, (2, 3, 4))
    moved = regroup(replica, 0, stages, get_named_weights(stages[0].model), carried)
    assert moved.units and moved.carried_sg and not moved.new_sg
    h, y1h = tf.ones((2, 64)), tf.one_hot([1, 2], 10)
    want = old.sgs[1]((h, y1h)).numpy()
    assert np.abs(want).max() > 0  # trained: a fresh module would predict zero
    np.testing.assert_array_equal(replica.sgs[0]((h, y1h)).numpy(), want)
    assert int(replica.sg_optimizers[0].iterations) == 3  # the Adam state came along
    assert module_state(replica.sgs[0], replica.sg_optimizers[0]).keys() == carried.keys()
    fresh = regroup(build_replica(SPEC), 0, stages_for(replica, (2, 3, 4)),
                    get_named_weights(stages[0].model))
    assert fresh.new_sg and not fresh.carried_sg


def test_the_parameter_server_hands_a_boundary_module_on(ps) -> None:
    server, client = ps
    old = build_replica(SPEC)
    _trained_module(old, 1)
    state = module_state(old.sgs[1], old.sg_optimizers[1])
    specs = module_state_specs(SPEC, unit_output_shapes(old)[2], 10)
    assert {n: (str(a.dtype), a.shape) for n, a in state.items()} == {
        n: (s.dtype, s.shape) for n, s in specs.items()}
    assert client.pull_weights(0, 7, 1, specs, sg_boundary=2) is None  # not pushed yet
    client.push_weights(Weights(1, 7, state, sg_boundary=2))
    assert client.pull_weights(0, 8, 1, specs, sg_boundary=2) is None  # not at 8
    assert client.pull_weights(0, 7, 1, specs, sg_boundary=0) is None  # another boundary's
    got = client.pull_weights(0, 7, 1, specs, sg_boundary=2)
    assert got is not None and got.sg_boundary == 2 and got.tensors.keys() == state.keys()
    for name, arr in state.items():
        np.testing.assert_array_equal(got.tensors[name], arr)
    older = {n: a + 1 for n, a in state.items()}
    client.push_weights(Weights(1, 5, older, sg_boundary=2))  # late: the newest one stays
    kept = client.pull_weights(0, 7, 1, specs, sg_boundary=2)
    assert kept is not None and kept.version == 7
    np.testing.assert_array_equal(next(iter(kept.tensors.values())), next(iter(state.values())))
    # validated like every message: a module of another boundary's shape, a non-boundary unit
    other = build_replica(SPEC)  # stage 0's module is at conv1_conv1 (a conv module)
    wrong = module_state(other.sgs[0], other.sg_optimizers[0])
    with pytest.raises(PeerError, match="INVALID_ARGUMENT: .*expected"):
        client.push_weights(Weights(1, 8, wrong, sg_boundary=2))
    with pytest.raises(PeerError, match="INVALID_ARGUMENT: sg_boundary: got unit 4"):
        client.push_weights(Weights(1, 8, state, sg_boundary=4))
    assert stage_ends(old) == [0, 2, 4]
