"""A KT run end to end on tiny synthetic data: every method, the teacher cache, saved teachers."""

import json

import keras
import numpy as np
import pytest

from testbed.controller.experiment import run_experiment
from testbed.metrics.run_dir import read_metrics, read_summary
from testbed.models import build_stages, get_model
from testbed.spec.load import parse_spec
from testbed.testing.datasets import quadrants
from testbed.training import loop as training_loop
from testbed.training.kt_trainables import load_teacher, save_teacher

_synthetic = quadrants


@pytest.fixture
def synthetic(monkeypatch):
    data = _synthetic()
    monkeypatch.setattr(training_loop, "load_dataset", lambda name: data)
    return data


def _spec(method, **kt):
    return parse_spec({
        "name": f"kt-{method}",
        "model": {"name": "four-layer", "width": 0.25},
        "algorithm": {"name": "kt", "kt": {"method": method, "teacher": "four-layer", "teacher_width": 0.5,
                                           "teacher_iterations": 30, **kt}},
        "training": {"batch_size": 32, "lr": 3e-3, "iterations": 20, "eval_every": 10, "log_every": 5},
    })


@pytest.mark.parametrize("method", ["independent", pytest.param("kd", marks=pytest.mark.slow),
                                    pytest.param("section-kt", marks=pytest.mark.slow)])
def test_each_method_runs_and_reports(method, synthetic, tmp_path):
    extra = {"finetune_steps": 6} if method == "section-kt" else {}
    s = read_summary(run_experiment(_spec(method, **extra), tmp_path, progress=False).path)
    kt = s["kt"]
    assert s["status"] == "completed" and kt["method"] == method
    assert kt["teacher"]["source"] in ("trained", "cache") and 0 <= kt["teacher"]["test_accuracy"] <= 1
    assert kt["compression"]["student_params"] == sum(s["params"]["stages"])
    assert kt["compression"]["teacher_params"] == sum(s["params"]["teacher_stages"])
    assert s["deployed_test_accuracy"] == pytest.approx(s["final_test_accuracy"], abs=1e-9)
    if method == "section-kt":
        before, after = kt["section_losses"]["before"], kt["section_losses"]["after"]
        assert len(before) == len(after) == 3
        assert kt["finetune"]["steps"] == 6
        assert sum(kt["student"]["adapter_params"]) > 0


@pytest.mark.slow
def test_teacher_is_trained_once_then_reused(synthetic, tmp_path):
    first = read_summary(run_experiment(_spec("kd"), tmp_path, progress=False).path)
    run = run_experiment(_spec("independent"), tmp_path, progress=False)
    second = read_summary(run.path)
    assert (first["kt"]["teacher"]["source"], second["kt"]["teacher"]["source"]) == ("trained", "cache")
    assert first["kt"]["teacher"]["test_accuracy"] == second["kt"]["teacher"]["test_accuracy"]
    assert not list(read_metrics(run.path, "teacher_train"))  # the cached teacher was not retrained
    kinds = {r["kind"] for r in read_metrics(run_experiment(_spec("section-kt", teacher_cache=False), tmp_path, progress=False).path)}
    assert {"teacher_train", "teacher_eval", "train", "eval"} <= kinds
    assert "section_loss" in next(read_metrics(run.path, "train"))


def test_saved_teacher_roundtrip_and_file_source(synthetic, tmp_path):
    keras.utils.set_random_seed(0)
    sections = [s.model for s in build_stages(get_model("four-layer"), (8, 8, 1), width=0.5)]
    path = tmp_path / "teacher.keras"
    save_teacher(sections, path, {"note": "test"})
    loaded = load_teacher(path)
    x = synthetic.x_test[:4]
    np.testing.assert_allclose(keras.Sequential(loaded)(x), keras.Sequential(sections)(x), rtol=1e-5)
    assert json.loads(path.with_suffix(".json").read_text()) == {"note": "test"}
    s = read_summary(run_experiment(_spec("section-kt", teacher=str(path)), tmp_path, progress=False).path)
    assert s["kt"]["teacher"]["source"] == "file" and s["kt"]["teacher"]["note"] == "test"


def test_a_plain_model_is_not_a_teacher(tmp_path):
    path = tmp_path / "plain.keras"
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]).save(path)
    with pytest.raises(ValueError, match="expected a keras.Sequential of section models"):
        load_teacher(path)


def test_progressive_run_trains_sections_in_turn_on_one_clock(synthetic, tmp_path):
    """Each section trains 20 steps in turn (80 section steps): the curve's steps and clocks run
    on across sections, every section changes (none frozen, none skipped), the heads are counted
    in training but not in the deployed student."""
    run = run_experiment(_spec("section-kt", section_input="progressive", aux_head_weight=1.0),
                         tmp_path, progress=False)
    s = read_summary(run.path)
    prog, student = s["kt"]["progressive"], s["kt"]["student"]
    assert s["iterations"] == 80 and (prog["sections"], prog["steps_per_section"]) == (4, 20)
    evals = list(read_metrics(run.path, "eval"))
    assert [e["step"] for e in evals] == [10, 20, 30, 40, 50, 60, 70, 80]
    walls = [e["wall_s"] for e in evals]
    assert walls == sorted(walls) and all(b > a for a, b in zip(walls, walls[1:]))
    assert [e["step"] for e in s["evaluations"]] == [10, 20, 30, 40, 50, 60, 70, 80]
    assert s["train_time_s"] == pytest.approx(sum(p["train_time_s"] for p in prog["parts"]))
    assert len(student["aux_head_params"]) == 3 and all(p > 0 for p in student["aux_head_params"])
    assert student["params"] == sum(s["params"]["stages"])
    # section 0 reads the images either way (nothing folded into it): trained = it + adapter + head
    assert student["training_params"][0] == (student["section_params"][0] + student["adapter_params"][0]
                                             + student["aux_head_params"][0])
    # the step of phase k is section k's: a representation loss in the first three, none in the last
    train = list(read_metrics(run.path, "train"))
    assert train and all((p["section_loss"] > 0) == (p["step"] <= 60) for p in train)
    events = [json.loads(line) for line in (run.path / "events.jsonl").read_text().splitlines()]
    starts = [e for e in events if e.get("event") == "section_started"]
    assert [(e["section"], e["from_step"]) for e in starts] == [(0, 0), (1, 20), (2, 40), (3, 60)]
