"""The time-to-accuracy bench's plan and verdict: step budgets from measured rates, the target
as a ratio or a bound (pure functions; the runs themselves are `make bench`)."""

from __future__ import annotations

import pytest

from testbed.bench import time_to_accuracy as tta


def _cell(train_s: float, **levels: float | None) -> dict:
    return {"train_time_s": train_s, "time_to_accuracy": [
        {"level": float(k.replace("_", ".")), "step": None if v is None else 1, "train_s": v}
        for k, v in levels.items()]}


def test_grid_runs_faster_rates_first_and_bp_local_once() -> None:
    cells = tta.grid()
    assert cells.index(("four-layer", "1gbit", "sg")) < cells.index(("four-layer", "10mbit", "sg"))
    assert [c for c in cells if c[2] == "bp-local"] == [
        ("four-layer", "1gbit", "bp-local"), ("eight-layer", "1gbit", "bp-local")]
    assert tta.grid("four-layer/10mbit/*,eight-layer/*/local") == [
        ("four-layer", "10mbit", m) for m in tta.methods() if m != "bp-local"] + [
        ("eight-layer", r, "local") for r in tta.RATES]


def test_slow_link_budget_comes_from_the_measured_rate_and_link() -> None:
    assert tta.planned_steps("four-layer", "1gbit", None) == tta.STEPS["four-layer"]
    # 3.2 MB on the busiest link per step at 100 Mbit: 10 Mbit allows 0.39 it/s -> 420 s x 0.39
    faster = {"mean_it_s": 3.5, "busiest_link_bits_per_step": 8 * 3.2e6}
    assert tta.planned_steps("four-layer", "10mbit", faster) == int(420 * 1e7 / (8 * 3.2e6))
    # compute-bound before and after (a tiny message): the measured rate, capped by the budget
    assert tta.planned_steps("four-layer", "10mbit", {"mean_it_s": 1.0,
                                                      "busiest_link_bits_per_step": 8}) == 420
    assert tta.planned_steps("four-layer", "100mbit", {"mean_it_s": 50.0}) == tta.STEPS["four-layer"]
    assert tta.planned_steps("four-layer", "10mbit", {"mean_it_s": 0.01}) == 2 * tta.EVALS


def test_a_slow_cell_alone_is_sized_by_its_own_messages_on_the_link() -> None:
    # the seed split's 3.2 MB boundary (128 x 14 x 14 x 32 floats) at 10 Mbit: 2.57 s one way
    elements, fp32, rate = [128 * 14 * 14 * 32, 33_000], {}, "10mbit"
    one_way = 8 * 4 * elements[0] / 1e7
    assert tta.link_seconds(elements, "bp-sync", fp32, rate) == pytest.approx(2 * one_way)
    assert tta.link_seconds(elements, "bp-pipeline", fp32, rate) == pytest.approx(2 * one_way)
    assert tta.link_seconds(elements, "sg", fp32, rate) == pytest.approx(one_way)
    assert tta.link_seconds(elements, "local", fp32, rate) == pytest.approx(one_way)
    int8 = {"activations": "int8", "gradients": "fp16"}
    assert tta.link_seconds(elements, "local", int8, rate) == pytest.approx(one_way / 4)
    assert tta.link_seconds(elements, "sg", int8, rate) == pytest.approx(one_way / 2)
    assert tta.link_seconds(elements, "bp-sync", int8, rate) == pytest.approx(one_way * 3 / 4)
    # the steps that fit the cap at that link time (no faster cell), within the budget
    assert tta.planned_steps("four-layer", rate, None, 2 * one_way) == int(420 / (2 * one_way))
    assert tta.planned_steps("four-layer", rate, None, 0.1) == tta.STEPS["four-layer"]
    assert tta.planned_steps("four-layer", "1gbit", None, 2 * one_way) == tta.STEPS["four-layer"]


def test_target_is_a_ratio_or_a_bound_and_names_the_cells() -> None:
    cells = {
        "four-layer/1gbit/bp-local": _cell(30.0, **{"0_95": 20.0}),
        "four-layer/10mbit/bp-pipeline": _cell(600.0, **{"0_95": 400.0}),
        "four-layer/10mbit/sg": _cell(420.0, **{"0_95": None}),
        "four-layer/10mbit/local": _cell(420.0, **{"0_95": 150.0}),
    }
    t = tta.targets(cells)
    assert (t["best_decoupled"], t["strongest_bp"], t["bp_local_s"]) == ("local", "bp-pipeline", 20.0)
    assert t["ratio"] == {"value": pytest.approx(150 / 400), "kind": "="} and t["met"]
    cells["four-layer/10mbit/bp-pipeline"] = _cell(600.0, **{"0_95": None})  # BP never got there
    t = tta.targets(cells)
    assert t["ratio"]["kind"] == "<=" and t["ratio"]["value"] == pytest.approx(150 / 600)
    assert t["met"]
    cells["four-layer/10mbit/local"] = _cell(420.0, **{"0_95": 350.0})
    assert not tta.targets(cells)["met"]  # 350 / 600 is no proof of <= 0.5
    assert tta.targets({})["met"] is None
    # the strongest BP is the faster of bp-sync and bp-pipeline on the same devices
    cells["four-layer/10mbit/bp-sync"] = _cell(500.0, **{"0_95": 300.0})
    t = tta.targets(cells)
    assert t["strongest_bp"] == "bp-sync" and t["ratio"]["value"] == pytest.approx(350 / 300)


def test_bp_local_from_another_machine_is_not_set_beside_the_ratio() -> None:
    host = {"cpu_model": "AMD EPYC"}
    cells = {
        "four-layer/1gbit/bp-local": {**_cell(30.0, **{"0_95": 20.0}), "cpu_model": "Intel Xeon"},
        "four-layer/10mbit/bp-pipeline": {**_cell(600.0, **{"0_95": 400.0}), **host},
        "four-layer/10mbit/local": {**_cell(420.0, **{"0_95": 150.0}), **host},
    }
    assert tta.targets(cells)["bp_local_s"] is None
    cells["four-layer/1gbit/bp-local"]["cpu_model"] = "AMD EPYC"
    assert tta.targets(cells)["bp_local_s"] == 20.0


def test_targets_are_judged_per_model_the_quick_form_included() -> None:
    cells = {"quick/10mbit/bp-sync": _cell(90.0, **{"0_95": 60.0}),
             "quick/10mbit/local": _cell(50.0, **{"0_95": 20.0})}
    t = tta.all_targets(cells)
    assert list(t) == ["quick"] and t["quick"]["ratio"]["value"] == pytest.approx(20 / 60)
    assert "bp-sync" in tta.methods() and tta.methods()["bp-sync"]["job.mode"] == "bp-sync"


def test_the_quick_form_is_named_not_in_the_full_grid() -> None:
    assert not [c for c in tta.grid() if c[0] == "quick"]
    quick = tta.grid("quick/10mbit/*")
    assert quick == [("quick", "10mbit", m) for m in tta.methods() if m != "bp-local"]
    spec = tta.make_spec("quick", "10mbit", "local", 400)
    assert (spec.model.name, spec.model.split_after, len(spec.cluster.devices)) == (
        "four-layer", ["fc1"], 2)


def test_every_cell_makes_a_valid_spec() -> None:
    for model, rate, method in tta.grid():
        spec = tta.make_spec(model, rate, method, 100)
        assert spec.job.mode == tta.methods()[method]["job.mode"]
        assert len(spec.cluster.devices) == (1 if method == "bp-local" else tta.DEVICES)
        assert {str(link.rate) for link in spec.cluster.links} <= {rate}
        assert spec.training.eval_every == 100 // tta.EVALS
    # a long budget still evaluates every 50 steps (the resolution of steps to a level)
    assert tta.make_spec("four-layer", "1gbit", "sg", 1600).training.eval_every == 50


def test_a_chunk_records_the_cell_selection_in_its_command(monkeypatch: pytest.MonkeyPatch) -> None:
    from testbed.bench import command

    monkeypatch.delenv("TESTBED_BENCH_ONLY", raising=False)
    assert command(tta.NAME) == "make bench NAME=time-to-accuracy"
    monkeypatch.setenv("TESTBED_BENCH_ONLY", "quick/10mbit/*")
    assert command(tta.NAME) == "TESTBED_BENCH_ONLY='quick/10mbit/*' make bench NAME=time-to-accuracy"


def test_headline_names_the_commands_of_the_cells_it_compares() -> None:
    from testbed.bench.headlines import time_to_accuracy

    cells = {
        "four-layer/1gbit/bp-local": {**_cell(30.0, **{"0_95": 20.0}), "command": "chunk 1"},
        "four-layer/10mbit/bp-pipeline": {**_cell(600.0, **{"0_95": None}), "command": "chunk 2"},
        "four-layer/10mbit/local": {**_cell(420.0, **{"0_95": 150.0}), "command": "chunk 3"},
        "four-layer/1gbit/local": {**_cell(100.0, **{"0_95": 50.0}), "command": "chunk 4"},
        "quick/10mbit/bp-sync": {**_cell(60.0, **{"0_95": 50.0}), "command": "quick chunk"},
        "quick/10mbit/local": {**_cell(40.0, **{"0_95": 45.0}), "command": "quick chunk"},
    }
    doc = {"cells": cells, "targets": tta.all_targets(cells), "cpus": 0.4, "devices": 4}
    four, quick = time_to_accuracy(doc)
    assert four.commands == ("chunk 1", "chunk 2", "chunk 3") and four.met
    assert "≤ 0.25x" in four.measured
    assert quick.commands == ("quick chunk",) and quick.met is False


def test_a_panel_shows_bp_local_only_beside_cells_of_its_machine() -> None:
    intel, amd = {"cpu_model": "Intel"}, {"cpu_model": "AMD"}
    cells = {"four-layer/1gbit/bp-local": {**_cell(30.0), **intel},
             "four-layer/1gbit/local": {**_cell(30.0), **intel},
             "four-layer/10mbit/local": {**_cell(420.0), **amd},
             "four-layer/100mbit/local": {**_cell(300.0), **intel}}
    assert set(tta.panel_cells(cells, "four-layer", "1gbit")) == {"bp-local", "local"}
    assert set(tta.panel_cells(cells, "four-layer", "100mbit")) == {"bp-local", "local"}
    assert set(tta.panel_cells(cells, "four-layer", "10mbit")) == {"local"}
    assert tta.panel_cells(cells, "eight-layer", "10mbit") == {}
