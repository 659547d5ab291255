"""Worker configs, the worker plan from a spec, and replicas equal to the in-process session."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from testbed.controller.plan import PlanError, WorkerPlan, peer_map, plan_workers, stage_groups
from testbed.runtime.config import WorkerConfig, WorkerConfigError, load_config, write_config
from testbed.spec.experiment import Spec
from testbed.spec.load import parse_spec


def _spec(mode: str = "sg", **job: object) -> Spec:
    algo = "sg" if mode in ("sg", "inprocess") else "bp"
    return parse_spec(
        {
            "name": "t",
            "model": {"name": "four-layer"},
            "algorithm": {"name": algo},
            "training": {"iterations": 5, "batch_size": 8},
            "job": {"mode": mode, **job},
        }
    )


def _config(tmp_path: Path, **over: object) -> WorkerConfig:
    return WorkerConfig(
        name="stage0",
        role="stage",
        run_id="r",
        spec=_spec(),
        stage_ids=(0,),
        workdir=tmp_path,
        t0=0.0,
        **over,
    )


def test_config_round_trips_through_json(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    write_config(cfg, tmp_path / "c.json")
    assert load_config(tmp_path / "c.json") == cfg


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"role": "boss"}, r"role: got 'boss'"),
        ({"bind": "localhost"}, r"bind: got 'localhost'.*expected 'host:port'"),
        ({"stage_ids": [0, 2]}, r"stage_ids: got \[0, 2\].*contiguous"),
        ({"name": "a b"}, r"name: got 'a b'"),
        ({"extra": 1}, r"extra: got 1; Extra inputs are not permitted"),
    ],
)
def test_bad_config_names_file_field_and_value(tmp_path: Path, patch: dict, message: str) -> None:
    raw = json.loads(_config(tmp_path).model_dump_json(exclude_unset=True))
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({**raw, **patch}))
    with pytest.raises(WorkerConfigError, match=f"{path}: {message}"):
        load_config(path)


def test_plans_per_mode() -> None:
    sg = plan_workers(_spec("sg"))
    assert [(w.name, w.role, w.stage_ids) for w in sg] == [
        ("ps", "ps", ()),
        ("stage0", "stage", (0,)),
        ("stage1", "stage", (1,)),
        ("stage2", "stage", (2,)),
        ("stage3", "stage", (3,)),
    ]
    assert [w.stage_ids for w in plan_workers(_spec("bp-local"))] == [(), (0, 1, 2, 3)]
    dp = plan_workers(_spec("dp-async", replicas=3))
    assert [(w.name, w.replica_index) for w in dp[1:]] == [
        ("replica0", 0),
        ("replica1", 1),
        ("replica2", 2),
    ]


def test_placement_groups_contiguous_stages_per_device() -> None:
    groups = stage_groups({"0": "edge1", "1": "edge1", "2": "cloud", "3": "cloud"}, 4)
    assert groups == [("edge1", (0, 1)), ("cloud", (2, 3))]
    with pytest.raises(
        PlanError, match=r"device 'a' gets stages that are not contiguous \(\[0, 2\]\)"
    ):
        stage_groups({"0": "a", "1": "b", "2": "a"}, 3)
    with pytest.raises(PlanError, match=r"got stage keys \['0'\]; expected exactly \['0', '1'\]"):
        stage_groups({"0": "a"}, 2)


def test_sg_needs_one_stage_per_device() -> None:
    spec = _spec("sg").model_copy(update={"placement": {"0": "a", "1": "a", "2": "b", "3": "c"}})
    with pytest.raises(PlanError, match=r"device 'a' gets stages \[0, 1\]; expected one stage"):
        plan_workers(spec)


def test_peer_map_links_neighbours_and_the_ps() -> None:
    plans = [WorkerPlan("ps", "ps"), WorkerPlan("a", "stage", (0,)), WorkerPlan("b", "stage", (1,))]
    peers = peer_map(plans, {"ps": "h:1", "a": "h:2", "b": "h:3"})
    assert peers == {"a": {"ps": "h:1", "downstream": "h:3"}, "b": {"ps": "h:1", "upstream": "h:2"}}


def test_micro_batches_must_divide_the_batch() -> None:
    with pytest.raises(Exception, match="batch_size 8 is not divisible by job.micro_batches 3"):
        _spec("bp-pipeline", micro_batches=3)


def test_replica_weights_equal_the_in_process_session() -> None:
    from testbed.data import get_spec
    from testbed.data.dataset import Dataset
    from testbed.runtime.replica import build_replica
    from testbed.runtime.replica import make_optimizer as worker_optimizer
    from testbed.training.session import Session, make_optimizer

    spec = _spec("inprocess")
    ds = get_spec("mnist")
    fake = Dataset(
        "mnist",
        np.zeros((1, 28, 28, 1), np.float32),
        np.zeros(1, np.int64),
        np.zeros((1, 28, 28, 1), np.float32),
        np.zeros(1, np.int64),
        10,
        ds.input_shape,
        "",
    )
    session = Session.build(spec, fake)
    replica = build_replica(spec)
    for a, b in zip(
        [*session.models, *session.sgs], [*replica.models(range(4)), *replica.sgs], strict=True
    ):
        for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
            np.testing.assert_array_equal(wa, wb)
    for name in ("adam", "sgd"):
        a, b = make_optimizer(name, 0.1).get_config(), worker_optimizer(name, 0.1).get_config()
        a.pop("name"), b.pop("name")  # auto-numbered per instance
        assert a == b


def test_workers_start_with_the_heap_allocator_settings(tmp_path: Path) -> None:
    from testbed.controller.attempts import _command
    from testbed.runtime.workdir import WORKER_ENV

    command = _command(_config(tmp_path), tmp_path / "stage0.json")
    assert command.env["MALLOC_MMAP_THRESHOLD_"] == str(128 * 1024 * 1024)
    assert command.env == WORKER_ENV and command.argv[-1] == str(tmp_path / "stage0.json")
