"""Checkpoints of the full training state: files, round trips, the next step after a restore."""

from __future__ import annotations

from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from testbed.data.batches import BatchSampler
from testbed.spec.load import parse_spec
from testbed.testing.datasets import quadrants
from testbed.training import checkpoint, state
from testbed.training.checkpoint import Checkpoint, CheckpointError
from testbed.training.resume import Position, restore_state, save_state
from testbed.training.session import Session, fetch_batch


def _spec(algorithm: str) -> Any:
    return parse_spec({
        "name": f"ckpt-{algorithm}",
        "model": {"name": "four-layer", "width": 0.25, "split_after": ["conv1", "fc1"]},
        "algorithm": {"name": algorithm, "sg": {"lr": 1.0e-2}},
        "training": {"batch_size": 16, "lr": 1.0e-2, "iterations": 10, "threads": 1},
    })


def _session(algorithm: str) -> tuple[Session, BatchSampler, Any]:
    session = Session.build(_spec(algorithm), quadrants())
    sampler = BatchSampler(len(session.data.y_train), 16, 0)
    return session, sampler, session.compile_step()


def _train(session: Session, sampler: BatchSampler, step: Any, n: int) -> None:
    for idx in islice(sampler, n):
        step(*fetch_batch(session.data, idx))


@pytest.mark.parametrize("algorithm", ["bp", "sg", "local"])
def test_a_step_after_restoring_equals_the_uninterrupted_next_step(
    tmp_path: Path, algorithm: str
) -> None:
    straight, s_sampler, s_step = _session(algorithm)
    _train(straight, s_sampler, s_step, 30)  # crosses an epoch: 384 samples / 16 = 24 batches
    save_state(tmp_path, straight.parts(), s_sampler, Position(step=30), keep=2)
    _train(straight, s_sampler, s_step, 1)

    resumed, r_sampler, r_step = _session(algorithm)
    fresh = state.capture(resumed.parts())
    assert restore_state(tmp_path, resumed.parts(), r_sampler).step == 30
    restored = state.capture(resumed.parts())
    moved = [k for k in fresh if not np.array_equal(fresh[k], restored[k])]
    assert any("/optimizer/" in k for k in moved) and any("/weights/" in k for k in moved)
    if algorithm == "sg":
        assert any("/sg/" in k for k in moved) and any("/sg_optimizer/" in k for k in moved)
    if algorithm == "local":  # the auxiliary heads and their optimizers come back too
        assert any("/head/" in k for k in moved) and any("/head_optimizer/" in k for k in moved)
    _train(resumed, r_sampler, r_step, 1)

    want, got = state.capture(straight.parts()), state.capture(resumed.parts())
    assert want.keys() == got.keys()
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    assert int(got["stage0/optimizer/000"]) == 31  # the optimizer's step counter came back too


def test_the_sampler_continues_with_the_batches_it_would_have_drawn() -> None:
    straight = BatchSampler(100, 30, seed=7)
    for _ in range(5):  # past the end of the first epoch (3 batches of 30 per epoch)
        next(straight)
    saved = straight.encode()
    want = [next(straight) for _ in range(4)]
    resumed = BatchSampler(100, 30, seed=7)
    resumed.decode_into(saved)
    for a, b in zip(want, (next(resumed) for _ in range(4)), strict=True):
        np.testing.assert_array_equal(a, b)
    assert resumed.drawn == 9
    with pytest.raises(ValueError, match="batches of 30; expected 100 in batches of 20"):
        BatchSampler(100, 20, seed=7).decode_into(saved)


def test_save_keeps_the_last_k_and_never_leaves_a_partial_file(tmp_path: Path) -> None:
    arrays = {"stage0/weights/000": np.arange(6, dtype=np.float32).reshape(2, 3)}
    for step in (10, 20, 30):
        checkpoint.save(tmp_path, Checkpoint(step, arrays, {"wall_s": step / 10}), keep=2)
    (tmp_path / ".ckpt-000000040.npz.123.tmp").write_bytes(b"half a file")  # a crash mid-write
    assert checkpoint.steps(tmp_path) == [20, 30]
    got = checkpoint.latest(tmp_path)
    assert got is not None and got.step == 30 and got.meta["wall_s"] == 3.0
    np.testing.assert_array_equal(got.arrays["stage0/weights/000"], arrays["stage0/weights/000"])
    (tmp_path / "ckpt-000000050.npz").write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match="ckpt-000000050.npz: not a readable checkpoint"):
        checkpoint.latest(tmp_path)


def test_restore_names_the_first_array_that_does_not_fit(tmp_path: Path) -> None:
    session, sampler, _ = _session("bp")
    arrays = state.capture(session.parts())
    arrays["stage1/weights/000"] = arrays["stage1/weights/000"][:1]
    with pytest.raises(state.StateError, match=r"stage1/weights/000: got float32 \(1,"):
        state.restore(session.parts(), arrays)
    del arrays["stage2/optimizer/003"]
    with pytest.raises(state.StateError, match="lacks .*stage2/optimizer/003"):
        state.restore(session.parts(), arrays)
