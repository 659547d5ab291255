"""Every paper figure writes a non-empty PNG and SVG whose plotted data matches the runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from testbed.report import paper
from testbed.testing.runs import RUNS, write_results


@pytest.fixture
def runs(tmp_path: Path) -> list[Path]:
    return write_results(tmp_path / "results")


def _images_ok(fig: paper.Figure) -> None:
    assert [p.suffix for p in fig.paths] == [".png", ".svg"]
    assert all(p.stat().st_size > 1000 for p in fig.paths)
    assert fig.paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_table1_from_runs_and_from_bench(runs: list[Path], tmp_path: Path) -> None:
    fig = paper.table1_figure(tmp_path / "t1", runs)
    _images_ok(fig)
    assert fig.data == {"four-layer": {"bp": 0.95, "sg": 0.85}}  # latest sg run wins
    bench = tmp_path / "accuracy.json"
    bench.write_text(json.dumps({"rows": [{"model": "vgg16", "bp": 0.98, "sg": 0.96}]}))
    assert paper.table1_figure(tmp_path / "t1b", bench_json=bench).data == {"vgg16": {"bp": 0.98, "sg": 0.96}}


def test_fig3_lines_are_the_eval_points(runs: list[Path], tmp_path: Path) -> None:
    fig = paper.fig3_accuracy(runs, tmp_path / "f3")
    _images_ok(fig)
    assert [d["test_acc"] for d in fig.data.values()] == [r["acc"] for r in RUNS]
    assert all(d["steps"] == [100, 200] for d in fig.data.values())


def test_throughput_per_mode_is_the_mean(runs: list[Path], tmp_path: Path) -> None:
    fig = paper.throughput_by_mode(runs, tmp_path / "tp")
    _images_ok(fig)
    assert fig.data == {"inprocess": 35.0, "sg": 12.5}


def test_link_rate_and_time_to_accuracy(runs: list[Path], tmp_path: Path) -> None:
    fig = paper.link_rate_figure(runs, tmp_path / "lr", target_acc=0.9)
    _images_ok(fig)
    assert fig.data == {"four-layer sg": {"rate_bps": [10_000_000, 1_000_000_000], "it_s": [5.0, 20.0],
                               "tta_s": [pytest.approx(float("nan"), nan_ok=True), 20.0]}}


def test_time_to_accuracy_bars_are_the_summaries_levels(runs: list[Path], tmp_path: Path) -> None:
    fig = paper.time_to_accuracy_figure(runs, tmp_path / "tta")
    _images_ok(fig)
    bp, sg = fig.data["four-layer-bp/20260101-000000-smoke-0000"], fig.data[
        "four-layer-sg/20260101-000001-smoke-0001"]
    assert bp == {"0.9": (200, 20.0), "0.95": (200, 20.0), "0.98": (None, None)}
    assert sg == {"0.9": (200, 20.0), "0.95": (None, None), "0.98": (None, None)}


def test_link_fidelity_points(runs: list[Path], tmp_path: Path) -> None:
    fig = paper.link_fidelity_figure(runs, tmp_path / "fid")
    _images_ok(fig)
    assert fig.data == {"configured_bps": [1e9, 1e7], "achieved_bps": [0.97e9, 0.99e7]}


def test_utilisation_from_worker_points(runs: list[Path], tmp_path: Path) -> None:
    fig = paper.utilisation_figure(runs[2], tmp_path / "util")
    _images_ok(fig)
    assert fig.data["stage0"]["busy"] == pytest.approx([0.5, 0.5, 0.5])
    assert fig.data["stage1"]["busy"] == pytest.approx([0.25, 0.25, 0.25])
    assert fig.data["stage0"]["t_s"] == [2.0, 4.0, 6.0]


def test_all_figures_and_empty_inputs(runs: list[Path], tmp_path: Path) -> None:
    figs = paper.all_figures(runs, tmp_path / "all")
    assert set(figs) >= {"table1", "fig3", "throughput", "link_rate", "fidelity",
                         "time_to_accuracy"}
    assert sum(k.startswith("utilisation/") for k in figs) == 2
    empty = paper.all_figures([], tmp_path / "none")
    assert all(f.data == {} for f in empty.values())
    _images_ok(empty["fig3"])
