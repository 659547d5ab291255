"""The results notebook is committed without outputs and executes on a results fixture."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from testbed.report.notebook import CELLS, NOTEBOOK, build, execute, run
from testbed.testing.runs import write_results


def test_committed_notebook_has_no_outputs_and_matches_cells(tmp_path: Path) -> None:
    nb = json.loads(NOTEBOOK.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code and all(c["outputs"] == [] and c["execution_count"] is None for c in code)
    fresh = nbformat.read(build(tmp_path / "fresh.ipynb"), as_version=4)
    assert [c.source for c in fresh.cells] == ["".join(c["source"]) for c in nb["cells"]]
    assert len(fresh.cells) == len(CELLS)


@pytest.mark.slow
def test_notebook_executes_on_fixture_and_draws_every_figure(tmp_path: Path) -> None:
    results = tmp_path / "results"
    write_results(results)
    nb = run(NOTEBOOK, results, timeout_s=120)  # raises CellExecutionError on a failing cell
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 8  # 6 comparison figures + utilisation of the 2 distributed runs
    assert any("4 runs of 4 experiments" in o.get("text", "") for o in outputs)
    made = {p.name for p in (results / "report").iterdir()}
    assert {"table1.png", "fig3-accuracy.svg", "link-rate.png", "link-fidelity.png",
            "time-to-accuracy.png"} <= made
    # the time-to-accuracy table: the fixture's bp run reached 0.9 at step 200 after 20 s
    markdown = "".join(str(o.get("data", {}).get("text/markdown", "")) for o in outputs)
    assert "| four-layer-bp/20260101-000000-smoke-0000 | 20.0 s (200 steps) | 20.0 s (200 steps) | - |" in markdown
    html = execute(NOTEBOOK, tmp_path / "report.html", results=results, timeout_s=120)
    assert html.read_text().count("data:image/png;base64") >= 8  # + the page icon
    assert json.loads(NOTEBOOK.read_text())["cells"][1]["outputs"] == []  # never written back
