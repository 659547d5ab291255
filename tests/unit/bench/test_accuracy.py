"""The accuracy benchmark's table: BP/SG gap beside the seed paper, every further method, and
what the compressed wire costs each algorithm."""

import pytest

from testbed.bench import accuracy


def _cell(final: float) -> dict:
    return {"final": final, "iterations": 3000, "batch_size": 128, "width": 1.0}


def test_table_reports_every_method_and_the_wire_cost_per_algorithm() -> None:
    cells = {"four-layer": {"bp": _cell(0.986), "sg": _cell(0.983), "bp int8/fp16": _cell(0.985),
                            "sg int8/fp16": _cell(0.978), "sg targets 1/4": _cell(0.97)}}
    (row,) = accuracy.table(cells)
    assert row["gap"] == pytest.approx(0.003) and row["gap_met"]
    assert row["methods"] == {k: v["final"] for k, v in cells["four-layer"].items()}
    assert row["wire_cost"] == pytest.approx({"bp": 0.001, "sg": 0.005})
    assert not row["wire_cost_met"]  # SG lost 0.5 point > 0.3


def test_every_method_names_a_spec_algorithm_and_valid_overrides() -> None:
    from testbed.spec.load import load_spec

    for label, (algo, overrides) in accuracy.METHODS.items():
        spec = load_spec(f"four-layer-{algo}", accuracy.SCALE, overrides)
        assert spec.algorithm.name == algo, label
    spec = load_spec("four-layer-sg", accuracy.SCALE, accuracy.METHODS["sg int8/fp16"][1])
    assert (spec.job.wire.activations, spec.job.wire.gradients) == ("int8", "fp16")


def test_table_reports_local_losses_against_bp_and_their_wire_cost() -> None:
    cells = {"eight-layer": {"bp": _cell(0.990), "local": _cell(0.975),
                             "local int8": _cell(0.974)}}  # a subset: no SG cell
    (row,) = accuracy.table(cells)
    assert row["gap"] is None and not row["gap_met"]
    assert row["local_gap"] == pytest.approx(0.015) and not row["local_gap_met"]  # > 1 point
    assert row["wire_cost"] == pytest.approx({"local": 0.001})
    cells["eight-layer"]["local"] = _cell(0.982)
    assert accuracy.table(cells)[0]["local_gap_met"]


def test_grid_selects_chunks_by_model_and_method_patterns() -> None:
    assert len(accuracy.grid()) == len(accuracy.MODELS) * len(accuracy.METHODS)
    assert accuracy.grid("*/bp,*/sg") == [(m, a) for m in accuracy.MODELS for a in ("bp", "sg")]
    assert accuracy.grid("four-layer/local*") == [("four-layer", "local"),
                                                  ("four-layer", "local int8")]
    assert accuracy.grid("nothing/*") == []


def test_a_chunk_adds_to_cells_that_name_their_commit_only() -> None:
    previous = {"cells": {"four-layer": {"bp": {**_cell(0.98), "commit": "abc"},
                                         "sg": _cell(0.97)}}}  # from before provenance
    assert accuracy.kept_cells(previous) == {"four-layer": {"bp": {**_cell(0.98), "commit": "abc"}}}
    assert accuracy.kept_cells({}) == {}


def test_table_skips_a_model_without_a_bp_cell() -> None:
    cells = {"vgg16": {"sg": _cell(0.96)}, "four-layer": {"bp": _cell(0.98)}}
    assert [r["model"] for r in accuracy.table(cells)] == ["four-layer"]


def test_headlines_give_bp_minus_sg_and_bp_minus_local_where_measured() -> None:
    from testbed.bench.headlines import accuracy as headline

    first, second = ({"command": f"chunk {k}"} for k in (1, 2))
    cells = {"four-layer": {"bp": {**_cell(0.986), **first}, "sg": {**_cell(0.983), **first},
                            "local": {**_cell(0.970), **second}},
             "vgg16": {"bp": {**_cell(0.988), **first}, "sg": {**_cell(0.962), **first}}}
    sg, local = headline({"rows": accuracy.table(cells), "cells": cells})
    assert sg.commands == ("chunk 1",) and local.commands == ("chunk 1", "chunk 2")
    assert "four-layer / VGG16 (¼ width)" in sg.result and sg.measured == "0.30 / 2.60 pt"
    assert sg.target == "≤ 1 / 5 pt" and sg.met
    assert "local losses" in local.result and "VGG16" not in local.result
    assert local.measured == "**1.60** pt" and local.met is False  # 1.6 > 1 point
    (only_bp,) = accuracy.table({"eight-layer": {"bp": _cell(0.99)}})
    assert headline({"rows": [only_bp]}) == []
