"""InfluxDB wired into runs: config from spec or environment, tags, summary counts, real server."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from testbed.controller.sinks import influx_config, with_topology_tags
from testbed.metrics.run_dir import read_metrics, read_summary
from testbed.metrics.sink import Point
from testbed.spec.errors import SpecError
from testbed.spec.load import parse_spec
from testbed.testing.datasets import quadrants
from testbed.testing.specs import kt_sections_raw
from testbed.testing.victoria import Victoria
from testbed.training import loop as training_loop

TINY = {
    "name": "tiny-influx",
    "model": {"name": "four-layer", "width": 0.25},
    "algorithm": {"name": "sg"},
    "training": {"batch_size": 32, "lr": 1e-3, "iterations": 30, "eval_every": 15,
                 "log_every": 5, "eval_samples": 256, "threads": 1},
}


def test_spec_influx_overrides_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFLUX_URL", "http://env:1")
    monkeypatch.setenv("INFLUX_TOKEN", "envtok")
    spec = parse_spec({**TINY, "metrics": {"influx": {"url": "http://spec:2", "bucket": "b"}}})
    cfg = influx_config(spec)
    assert cfg is not None and (cfg.url, cfg.token, cfg.bucket) == ("http://spec:2", "envtok", "b")
    assert "token" not in spec.model_dump()["metrics"]["influx"]  # never lands in spec.yaml


def test_env_only_and_unconfigured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INFLUX_URL", raising=False)
    assert influx_config(parse_spec(TINY)) is None
    monkeypatch.setenv("INFLUX_URL", "http://env:1")
    cfg = influx_config(parse_spec(TINY))
    assert cfg is not None and cfg.url == "http://env:1"


def test_bad_influx_url_is_a_located_error() -> None:
    with pytest.raises(SpecError, match=r"metrics\.influx\.url: got 'localhost:8086'"):
        parse_spec({**TINY, "metrics": {"influx": {"url": "localhost:8086"}}})


def test_worker_points_get_device_and_link_tags() -> None:
    p = Point("link", {"sent_messages": 1}, {"worker": "stage0", "stage": "0", "peer": "downstream"}, 1)
    tags = with_topology_tags(p).tags
    assert tags["device"] == "stage0" and tags["link"] == "stage0->downstream"
    plain = Point("train", {"loss": 1.0}, {}, 1)
    assert with_topology_tags(plain) is plain


@pytest.mark.integration
def test_inprocess_run_points_reach_victoria(
    victoria: Victoria, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from testbed.controller.experiment import run_experiment

    monkeypatch.delenv("INFLUX_URL", raising=False)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({**TINY, "metrics": {"influx": {"url": victoria.url}}}))
    spec = parse_spec(yaml.safe_load(path.read_text()), str(path))
    run = run_experiment(spec, tmp_path / "results", progress=False)
    summary = read_summary(run.path)
    local = list(read_metrics(run.path, "train"))
    assert len(local) == 6
    assert summary["influx"]["written"] + summary["influx"]["flushed"] == len(local) + 2
    assert summary["influx"]["pending"] == 0
    got = victoria.wait_samples("train", "loss", len(local))
    assert [v for _, v, _ in got] == pytest.approx([r["loss"] for r in local])
    want = {"run": run.run_id, "experiment": "tiny-influx", "mode": "inprocess",
            "device": "controller", "stage": "all", "link": "none"}
    assert all(labels == want for _, _, labels in got)
    acc = victoria.wait_samples("eval", "test_acc", 2)
    assert [v for _, v, _ in acc] == pytest.approx([r["test_acc"] for r in read_metrics(run.path, "eval")])


@pytest.mark.integration
@pytest.mark.slow
def test_distributed_run_worker_points_reach_victoria(
    victoria: Victoria, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from testbed.controller.experiment import run_experiment

    monkeypatch.setenv("INFLUX_URL", victoria.url)  # configured by environment this time
    raw = {**TINY, "name": "tiny-dist", "job": {"mode": "sg"},
           "model": {"name": "four-layer", "split_after": ["conv1"], "width": 0.5},
           "training": {**TINY["training"], "iterations": 20, "eval_every": 20}}
    run = run_experiment(parse_spec(raw), tmp_path / "results", progress=False)
    summary = read_summary(run.path)
    local = {k: len(list(read_metrics(run.path, k))) for k in ("worker", "link", "train")}
    assert local["worker"] > 0 and local["link"] > 0
    assert summary["influx"]["written"] + summary["influx"]["flushed"] == sum(
        1 for _ in read_metrics(run.path))
    sent = [r["sent_messages"] for r in read_metrics(run.path, "link") if "sent_messages" in r]
    links = victoria.wait_samples("link", "sent_messages", len(sent))
    assert sorted(v for _, v, _ in links) == sorted(float(v) for v in sent) and sent
    labels = {(lab["device"], lab["stage"], lab["link"], lab["mode"], lab["run"]) for _, _, lab in links}
    assert ("stage0", "0", "stage0->downstream", "sg", run.run_id) in labels
    assert ("stage1", "1", "stage1->upstream", "sg", run.run_id) in labels


@pytest.mark.integration
@pytest.mark.slow
def test_kt_run_points_of_every_phase_reach_victoria(
    victoria: Victoria, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from testbed.controller.experiment import run_experiment

    monkeypatch.setattr(training_loop, "load_dataset", lambda name: quadrants())
    monkeypatch.setenv("INFLUX_URL", victoria.url)
    raw = {"name": "tiny-kt", "model": {"name": "four-layer", "width": 0.25},
           "algorithm": {"name": "kt", "kt": {"method": "section-kt", "teacher": "four-layer",
                                              "teacher_width": 0.5, "teacher_iterations": 10,
                                              "teacher_cache": False, "finetune_steps": 5}},
           "training": {"batch_size": 32, "lr": 3e-3, "iterations": 10, "eval_every": 5,
                        "log_every": 5}}
    run = run_experiment(parse_spec(raw), tmp_path / "results", progress=False)
    summary = read_summary(run.path)
    assert summary["status"] == "completed" and summary["influx"]["pending"] == 0
    for kind in ("teacher_train", "train", "finetune_train"):
        local = [r["loss"] for r in read_metrics(run.path, kind)]
        got = victoria.wait_samples(kind, "loss", len(local))
        assert local and [v for _, v, _ in got] == pytest.approx(local), kind


@pytest.mark.integration
@pytest.mark.slow
def test_kt_sections_run_reaches_victoria_from_teacher_and_workers(
    victoria: Victoria, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from testbed.controller.experiment import run_experiment

    monkeypatch.setenv("INFLUX_URL", victoria.url)
    run = run_experiment(parse_spec(kt_sections_raw()), tmp_path / "results", progress=False)
    summary = read_summary(run.path)
    assert summary["status"] == "completed"
    assert summary["influx_teacher_phase"]["pending"] == 0 and summary["influx"]["pending"] == 0
    teacher = [r["loss"] for r in read_metrics(run.path, "teacher_train")]
    got = victoria.wait_samples("teacher_train", "loss", len(teacher))
    assert teacher and [v for _, v, _ in got] == pytest.approx(teacher)
    student = [r["loss"] for r in read_metrics(run.path, "train")]
    got = victoria.wait_samples("train", "loss", len(student))
    assert student and sorted(v for _, v, _ in got) == pytest.approx(sorted(student))
