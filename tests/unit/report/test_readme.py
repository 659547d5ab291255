"""The README's headline table is rendered from results/bench/*.json, never typed."""

import json
from pathlib import Path

import pytest

from testbed.bench.headlines import HEADLINES
from testbed.paths import PROJECT_ROOT
from testbed.report import readme


def test_the_committed_readme_matches_what_the_json_renders() -> None:
    assert readme.main(["--check"]) == 0, "run `python -m testbed.report.readme` and commit"


def test_every_committed_result_with_a_headline_renders() -> None:
    bench = PROJECT_ROOT / "results" / "bench"
    for name, rows in HEADLINES.items():
        path = bench / f"{name}.json"
        if path.is_file():
            assert rows(json.loads(path.read_text())), name


def _links(ratios: list[float], within: list[bool], command: str | None) -> dict:
    doc = {"target": 0.03, "results": [
        {"rate": r, "median_ratio": x, "within_target": w}
        for r, x, w in zip(["10mbit", "100mbit"], ratios, within, strict=True)]}
    if command:
        doc["provenance"] = {"command": command}
    return doc


def test_a_missed_target_is_bold_and_the_command_comes_from_provenance(tmp_path: Path) -> None:
    (tmp_path / "links.json").write_text(json.dumps(_links([0.9, 1.0], [False, True],
                                                           "make bench NAME=links")))
    table = readme.table(tmp_path)
    assert table.splitlines()[2] == (
        "| link achieved / configured, 10mbit / 100mbit | **0.900** / 1.000 | within 3% "
        "| `make bench NAME=links` |")
    doc = _links([1.0, 1.0], [True, True], None)
    (tmp_path / "links.json").write_text(json.dumps(doc))
    assert "| 1.000 / 1.000 | within 3% | `make bench NAME=links` |" in readme.table(tmp_path)
    doc["provenance"] = {"commit": "unknown", "command": None}
    (tmp_path / "links.json").write_text(json.dumps(doc))
    assert "| `make bench NAME=links` (commit unknown) |" in readme.table(tmp_path)


def test_benchmarks_without_a_result_are_left_out(tmp_path: Path) -> None:
    assert readme.table(tmp_path) == readme.HEADER


def test_splice_replaces_only_between_the_markers() -> None:
    text = f"intro\n{readme.BEGIN}\nold table\n{readme.END}\nrest\n"
    assert readme.splice(text, "new\n") == f"intro\n{readme.BEGIN}\nnew\n{readme.END}\nrest\n"
    with pytest.raises(ValueError, match="markers"):
        readme.splice("no markers here", "new\n")


def test_check_fails_on_a_stale_readme(tmp_path: Path) -> None:
    (tmp_path / "links.json").write_text(json.dumps(_links([1.0, 1.0], [True, True], None)))
    stale = tmp_path / "README.md"
    stale.write_text(f"{readme.BEGIN}\n| typed | by hand |\n{readme.END}\n")
    args = ["--readme", str(stale), "--bench-dir", str(tmp_path)]
    assert readme.main([*args, "--check"]) == 1
    assert readme.main(args) == 0
    assert readme.main([*args, "--check"]) == 0


def test_a_row_measured_by_several_chunks_names_each_command(tmp_path: Path) -> None:
    cell = {"final": 0.98, "iterations": 3000, "batch_size": 128, "width": 1.0}
    cells = {"four-layer": {"bp": {**cell, "command": "A make bench NAME=accuracy"},
                            "local": {**cell, "final": 0.97, "command": "B make bench NAME=accuracy"}}}
    from testbed.bench.accuracy import table

    doc = {"rows": table(cells), "cells": cells, "provenance": {"command": "B make bench NAME=accuracy"}}
    (tmp_path / "accuracy.json").write_text(json.dumps(doc))
    assert readme.table(tmp_path).splitlines()[2].endswith(
        "| `A make bench NAME=accuracy` + `B make bench NAME=accuracy` |")
