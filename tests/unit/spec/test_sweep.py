"""Sweeps: grid expansion, dotted-path overrides on raw YAML, located errors, a tiny real sweep."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from testbed.cli import app
from testbed.spec.errors import SpecError
from testbed.spec.sweep import cells, expand, load_sweep, set_path

BASE = {
    "name": "tiny-base",
    "model": {"name": "four-layer", "width": 0.25},
    "algorithm": {"name": "sg"},
    "training": {"batch_size": 32, "lr": 1e-3, "iterations": 1000, "eval_every": 500,
                 "eval_samples": 256, "threads": 1},
    "cluster_extra": None,
    "scales": {"smoke": {"training": {"iterations": 20, "eval_every": 10}}},
}


def write(dirpath: Path, name: str, doc: dict[str, Any]) -> Path:
    path = dirpath / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture
def experiments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "experiments"
    d.mkdir()
    base = {k: v for k, v in BASE.items() if k != "cluster_extra"}
    write(d, "tiny-base", base)
    write(d, "tiny-sweep", {"name": "tiny-sweep", "sweep": {
        "base": "tiny-base", "scale": "smoke",
        "grid": {"algo": {"bp": {"algorithm.name": "bp"}, "sg": {"algorithm.name": "sg"}},
                 "training.batch_size": [16, 32]},
    }})
    monkeypatch.setenv("TESTBED_EXPERIMENTS", str(d))
    return d


def test_set_path_keys_indices_and_star() -> None:
    doc: dict[str, Any] = {"cluster": {"links": [{"rate": "1gbit"}, {"rate": "1gbit"}]}}
    set_path(doc, "cluster.links.*.rate", "10mbit")
    assert [link["rate"] for link in doc["cluster"]["links"]] == ["10mbit", "10mbit"]
    set_path(doc, "cluster.links.1.delay", "5ms")
    assert doc["cluster"]["links"][1] == {"rate": "10mbit", "delay": "5ms"}
    set_path(doc, "job.mode", "sg")  # missing mappings are created
    assert doc["job"] == {"mode": "sg"}
    with pytest.raises(SpecError, match=r"index '7' for a list of 2; expected 0..1 or '\*'"):
        set_path(doc, "cluster.links.7.rate", "1mbit")
    with pytest.raises(SpecError, match=r"'\*' over an empty list"):
        set_path({"links": []}, "links.*.rate", "1mbit")


def test_grid_is_the_cartesian_product_first_axis_slowest(experiments: Path) -> None:
    sweep = load_sweep("tiny-sweep")
    assert sweep is not None
    got = [(labels, over) for labels, over in cells(sweep.sweep)]
    assert [tuple(lab.values()) for lab, _ in got] == [("bp", "16"), ("bp", "32"), ("sg", "16"), ("sg", "32")]
    specs = expand(sweep)
    assert [(s.name, s.algorithm.name, s.training.batch_size, s.training.iterations, s.scale)
            for _, s in specs][:2] == [("tiny-sweep-bp-16", "bp", 16, 20, "smoke"),
                                       ("tiny-sweep-bp-32", "bp", 32, 20, "smoke")]


def test_bad_cell_is_reported_before_anything_runs(experiments: Path) -> None:
    write(experiments, "bad-sweep", {"name": "bad-sweep", "sweep": {
        "base": "tiny-base", "grid": {"training.batch_size": [16, -1]}}})
    result = CliRunner().invoke(app, ["run", "bad-sweep", "--results", str(experiments / "r")])
    assert result.exit_code == 2
    assert "sweep cell bad-sweep--1" in result.output and "training.batch_size: got -1" in result.output
    assert not (experiments / "r").exists()


def test_sweep_section_errors_are_located(experiments: Path) -> None:
    write(experiments, "empty-axis", {"name": "e", "sweep": {"base": "tiny-base", "grid": {"a": []}}})
    with pytest.raises(SpecError, match=r"sweep\.grid: .*axis 'a' has no values"):
        load_sweep("empty-axis")
    write(experiments, "typo", {"name": "t", "sweep": {"base": "tiny-base", "grid": {"a": [1]}, "gird": 1}})
    with pytest.raises(SpecError, match=r"sweep\.gird: Extra inputs"):
        load_sweep("typo")


def test_bandwidth_sweep_expands_to_nine_cells(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TESTBED_EXPERIMENTS", raising=False)
    sweep = load_sweep("bandwidth-sweep")
    assert sweep is not None
    specs = [s for _, s in expand(sweep, "smoke")]
    assert len(specs) == 9
    assert {(s.job.mode, s.algorithm.name) for s in specs} == {
        ("sg", "sg"), ("bp-pipeline", "bp"), ("bp-local", "bp")}
    raw = [yaml.safe_load(yaml.safe_dump(s.model_dump(mode="json")))["cluster"]["links"] for s in specs]
    assert {link["rate"] for links in raw for link in links} == {"1gbit", "100mbit", "10mbit"}


@pytest.mark.slow
def test_tiny_sweep_runs_each_cell_and_writes_table(experiments: Path, tmp_path: Path) -> None:
    write(experiments, "two-cells", {"name": "two-cells", "sweep": {
        "base": "tiny-base", "scale": "smoke", "grid": {"algorithm.name": ["bp", "sg"]},
        "target_accuracy": 0.05}})
    result = CliRunner().invoke(app, ["run", "two-cells", "--results", str(tmp_path / "res"), "--no-progress"])
    assert result.exit_code == 0, result.output
    (out,) = (tmp_path / "res" / "two-cells").iterdir()
    rows = list(csv.DictReader((out / "table.csv").open()))
    assert [(r["cell"], r["algorithm.name"], r["status"]) for r in rows] == [
        ("two-cells-bp", "bp", "completed"), ("two-cells-sg", "sg", "completed")]
    for r in rows:
        summary = yaml.safe_load((Path(r["run"]) / "summary.json").read_text())
        assert float(r["final_test_accuracy"]) == summary["final_test_accuracy"]
        # the sweep's level joins the spec's; the first evaluation (step 10) is above 0.05
        first = summary["time_to_accuracy"][0]
        assert first["level"] == 0.05 and first["step"] == 10
        assert (float(r["time_to_0.05_s"]), int(r["steps_to_0.05"])) == (
            pytest.approx(first["train_s"]), 10)
        assert 0 < first["train_s"] < summary["train_time_s"]
        assert {"time_to_0.9_s", "steps_to_0.98"} <= set(r)
    md = (out / "table.md").read_text()
    assert "| two-cells-bp | bp | completed |" in md
    assert "time to test accuracy 0.05: training seconds (steps)" in md
    assert (out / "figures" / "fig3-accuracy.png").stat().st_size > 1000
    assert (out / "figures" / "throughput-by-mode.svg").is_file()


def test_pivot_puts_methods_down_and_rates_across() -> None:
    from testbed.controller.sweep_run import pivot

    rows = [{"mode": m, "rate": r, "time_to_0.95_s": t, "steps_to_0.95": n}
            for m, r, t, n in (("sg", "1gbit", 12.34, 300), ("sg", "10mbit", "", ""),
                               ("bp", "1gbit", 8.0, 200), ("bp", "10mbit", 80.0, 200))]
    assert pivot(rows, ["mode", "rate"], 0.95).splitlines() == [
        "time to test accuracy 0.95: training seconds (steps)", "",
        "| mode | 1gbit | 10mbit |", "|---|---|---|",
        "| sg | 12.3 s (300) | - |", "| bp | 8.0 s (200) | 80.0 s (200) |"]


def test_target_accuracy_joins_every_cells_levels(experiments: Path) -> None:
    write(experiments, "lv", {"name": "lv", "sweep": {
        "base": "tiny-base", "grid": {"algorithm.name": ["bp"]}, "target_accuracy": 0.85}})
    ((_, spec),) = expand(load_sweep("lv"))
    assert spec.report.accuracy_levels == [0.85, 0.9, 0.95, 0.98]
