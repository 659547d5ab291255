"""Distributed section-kt (job.mode kt-sections): plan, spec checks, and a real run over gRPC."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from testbed.controller.experiment import run_experiment
from testbed.controller.plan import WorkerPlan, device_of, peer_map, plan_workers
from testbed.metrics.run_dir import read_metrics, read_summary
from testbed.processes import pid_alive
from testbed.spec.errors import SpecError
from testbed.spec.experiment import Spec
from testbed.spec.load import parse_spec
from testbed.testing.specs import kt_sections_raw

_raw = kt_sections_raw


def _spec(mode: str = "kt-sections", **over: Any) -> Spec:
    return parse_spec(_raw(mode, **over))


def test_plan_puts_the_teacher_beside_one_worker_per_device() -> None:
    spec = _spec()
    assert plan_workers(spec) == [
        WorkerPlan("ps", "ps"), WorkerPlan("teacher", "teacher"),
        WorkerPlan("edge0", "stage", (0,)), WorkerPlan("edge1", "stage", (1,)),
    ]
    sequential = _spec(placement={"0": "edge0", "1": "edge0"})
    assert [p.stage_ids for p in plan_workers(sequential)] == [(), (), (0, 1)]


def test_teacher_peers_name_every_section_and_its_worker() -> None:
    plans = plan_workers(_spec(placement={"0": "a", "1": "a"}))
    addresses = {"ps": "h:1", "teacher": "h:2", "a": "h:3"}
    peers = peer_map(plans, addresses)
    assert peers["teacher"] == {"ps": "h:1", "stage0@a": "h:3", "stage1@a": "h:3"}
    assert peers["a"] == {"ps": "h:1"}


def test_teacher_runs_where_placement_says_else_on_the_host() -> None:
    cluster = {"backend": "local", "devices": [{"name": "cloud", "profile": "cloud"},
                                               {"name": "edge0", "profile": "edge"},
                                               {"name": "edge1", "profile": "edge"}]}
    spec = _spec(cluster=cluster, placement={"teacher": "cloud", "0": "edge0", "1": "edge1"})
    assert {p.name: device_of(spec, p) for p in plan_workers(spec)} == {
        "ps": None, "teacher": "cloud", "edge0": "edge0", "edge1": "edge1"}
    unplaced = _spec(cluster=cluster, placement={"0": "edge0", "1": "edge1"})
    assert device_of(unplaced, WorkerPlan("teacher", "teacher")) is None


@pytest.mark.parametrize(("patch", "message"), [
    ({"algorithm": {"name": "kt", "kt": {"method": "kd", "pair": "mnist"}}},
     "kt-sections' streams the teacher's section activations.*got method 'kd'"),
    ({"algorithm": {"name": "bp"}}, "job.mode 'kt-sections' needs algorithm.name 'kt'"),
    ({"placement": {"0": "teacher", "1": "edge1"}}, "'teacher' are reserved"),
])
def test_bad_kt_sections_specs_are_named(patch: dict[str, Any], message: str) -> None:
    with pytest.raises((SpecError, ValueError), match=message):
        plan_workers(_spec(**patch))


def _pids(run_path: Path) -> dict[str, int]:
    return {p.name.split(".")[0]: json.loads(p.read_text())["pid"]
            for p in (run_path / "workers").glob("*.ready.json")}


@pytest.mark.slow
def test_teacher_streams_to_two_student_workers_and_matches_in_process(tmp_path: Path) -> None:
    run = run_experiment(_spec(), tmp_path, progress=False)
    s = read_summary(run.path)
    assert s["status"] == "completed"
    assert {p["name"]: p["role"] for p in s["topology"]} == {
        "ps": "ps", "teacher": "teacher", "edge0": "stage", "edge1": "stage"}
    # the assembled student was evaluated end to end by the PS, and folded by the controller
    assert [r["step"] for r in read_metrics(run.path, "eval")] == [20, 40]
    assert s["deployed_test_accuracy"] == pytest.approx(s["final_test_accuracy"], abs=1e-9)
    assert s["final_test_accuracy"] > 0.2  # 40 steps of 32: far above chance (0.1), not trained
    # the teacher sent every batch to both sections, with its targets: bytes counted per link
    sent = s["workers"]["teacher"]["peers"]
    assert sent["sent:edge0"]["messages"] == sent["sent:edge1"]["messages"] == 40
    x_bytes, labels_bytes = 32 * 28 * 28 * 4, 32 * 8
    assert sent["sent:edge0"]["raw_bytes"] > 40 * (x_bytes + labels_bytes)
    assert 1.0 <= s["transfer"]["wire_over_raw"] <= 1.02
    assert {r["worker"] for r in read_metrics(run.path, "train")} == {"edge1"}
    assert {p: v for p, v in _pids(run.path).items() if pid_alive(v)} == {}
    # the transport is exact: the same run in process reaches the very same student
    ref = read_summary(run_experiment(_spec("inprocess"), tmp_path, progress=False).path)
    assert ref["kt"]["section_losses"]["after"] == pytest.approx(
        s["kt"]["section_losses"]["after"], rel=1e-5)
    assert ref["final_test_accuracy"] == s["final_test_accuracy"]


def test_a_message_for_a_section_this_worker_does_not_hold_is_named() -> None:
    from testbed.runtime.stage_service import StageNode
    from testbed.runtime.wire.tensors import MessageValidationError, TensorSpec

    h, t = TensorSpec("float32", (None, 4)), TensorSpec("float32", (None, 2))
    node = StageNode("stage", (1, 2), None, None, None,  # type: ignore[arg-type]
                     section_specs={1: (h, t), 2: (t, h)})
    assert node.input_specs(2) == (t, h)
    with pytest.raises(MessageValidationError, match=r"stage_id: got 0, expected one of \[1, 2\]"):
        node.input_specs(0)
    plain = StageNode("stage", (1,), None, h, None)  # type: ignore[arg-type]
    assert plain.input_specs(0) == (h, None)
