"""The results notebook: build results/report.ipynb (no outputs) and execute it headless to HTML.

`python -m testbed.report.notebook` (`make report`) runs the notebook with nbclient over the
results root ($TESTBED_RESULTS or results/) and writes report.html next to it; the .ipynb on
disk is never rewritten by execution, so it stays committed without outputs.
`python -m testbed.report.notebook --build` regenerates the .ipynb from the cells below.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat

from testbed.paths import PROJECT_ROOT

NOTEBOOK = PROJECT_ROOT / "results" / "report.ipynb"

CELLS: list[tuple[str, str]] = [
    ("markdown", ("# Results\n\nEvery figure below is regenerated from the run directories under "
     "the results root (`$TESTBED_RESULTS`, default `results/`). Run `make report` for HTML, "
     "or open this notebook in Jupyter and run all cells.")),
    ("code", ("from pathlib import Path\nfrom IPython.display import Image, Markdown, display\n"
     "from testbed.metrics.run_dir import default_results_root, find_runs\n"
     "from testbed.report import paper, series\n\n"
     "RESULTS = default_results_root()\nOUT = RESULTS / 'report'\n"
     "runs = find_runs(RESULTS)\nlatest = series.latest_per_experiment(runs)\n"
     "print(f'{len(runs)} runs of {len(latest)} experiments under {RESULTS}')\n\n"
     "def show(fig):\n    display(Image(filename=str(fig.paths[0])))\n    return fig.data")),
    ("markdown", ("## Runs\n\nThe latest run of each experiment: status, accuracy and training speed.")),
    ("code", ("rows = ['| experiment | mode | status | final acc | it/s |', '|---|---|---|---|---|']\n"
     "for r in latest:\n    s = series.summary(r)\n"
     "    rows.append(f\"| {r.parent.name} | {s.get('mode')} | {s.get('status')} | \"\n"
     "                f\"{s.get('final_test_accuracy', float('nan')):.4f} | {s.get('mean_it_s', float('nan')):.1f} |\")\n"
     "display(Markdown('\\n'.join(rows)))")),
    ("markdown", ("## Time to accuracy\n\nTraining seconds and steps until each run first "
     "reached each of its `report.accuracy_levels` (the latest run of each experiment): the time "
     "from the first step until the weights that reached the level existed, startup and "
     "evaluation excluded.")),
    ("code", ("tta = series.tta_by_run(latest)\n"
     "levels = sorted({lv for d in tta.values() for lv in d})\n"
     "rows = ['| run | ' + ' | '.join(f'to {lv:g}' for lv in levels) + ' |',\n"
     "        '|---|' + '---|' * len(levels)]\n"
     "for key, d in tta.items():\n"
     "    cells = [f'{d[lv][1]:.1f} s ({d[lv][0]} steps)' if lv in d and d[lv][0] is not None\n"
     "             else '-' for lv in levels]\n"
     "    rows.append(f'| {key} | ' + ' | '.join(cells) + ' |')\n"
     "display(Markdown('\\n'.join(rows)))\n"
     "show(paper.time_to_accuracy_figure(latest, OUT / 'time-to-accuracy'))")),
    ("markdown", ("## Table 1: BP vs SG accuracy per model\n\nFrom `results/bench/accuracy.json` "
     "(`make bench NAME=accuracy`) when present, else the latest runs.")),
    ("code", ("bench = RESULTS / 'bench' / 'accuracy.json'\n"
     "show(paper.table1_figure(OUT / 'table1', latest, bench if bench.is_file() else None))")),
    ("markdown", ("## Fig. 3: test accuracy vs iteration, BP (solid) vs SG (dashed)\n\n"
     "The latest in-process BP and SG run of each model.")),
    ("code", ("seed = [r for r in latest if series.summary(r).get('mode') == 'inprocess'\n"
     "        and series.summary(r).get('algorithm') in ('bp', 'sg')]\n"
     "show(paper.fig3_accuracy(seed, OUT / 'fig3-accuracy'))")),
    ("markdown", ("## Throughput per mode\n\nMean training it/s over the completed runs of each job mode.")),
    ("code", ("show(paper.throughput_by_mode(runs, OUT / 'throughput-by-mode'))")),
    ("markdown", ("## Link rate: it/s and time to accuracy\n\nRuns on an emulated cluster, by the "
     "slowest configured link (e.g. `make experiment NAME=bandwidth-sweep SCALE=smoke`).")),
    ("code", ("show(paper.link_rate_figure(runs, OUT / 'link-rate'))")),
    ("markdown", ("## Link fidelity\n\nAchieved (on the wire) vs configured rate, from the probes "
     "each emulated run records in `summary.json`.")),
    ("code", ("show(paper.link_fidelity_figure(runs, OUT / 'link-fidelity'))")),
    ("markdown", ("## Utilisation per device\n\nBusy fraction (compute / wall) of each worker, "
     "from its `worker` metric points; one figure per distributed experiment (latest run).")),
    ("code", ("for r in latest:\n    if series.utilisation(r):\n"
     "        show(paper.utilisation_figure(r, OUT / f'utilisation-{r.parent.name}'))")),
]


@contextlib.contextmanager
def _environ(extra: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def build(path: Path = NOTEBOOK) -> Path:
    """Write the notebook from CELLS, without outputs."""
    nb = nbformat.v4.new_notebook()
    make = {"markdown": nbformat.v4.new_markdown_cell, "code": nbformat.v4.new_code_cell}
    nb.cells = [make[kind](source) for kind, source in CELLS]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def run(path: Path = NOTEBOOK, results: Path | None = None, timeout_s: int = 600) -> Any:
    """The executed notebook (in memory); raises CellExecutionError naming a failing cell."""
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    env = {"TESTBED_RESULTS": str(results)} if results is not None else {}
    client = NotebookClient(nb, timeout=timeout_s, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    with _environ(env):  # the kernel inherits the environment
        client.execute()
    return nb


def execute(path: Path = NOTEBOOK, html: Path | None = None, results: Path | None = None,
            timeout_s: int = 600) -> Path:
    """Run every cell headless (nbclient); write HTML next to the notebook; return its path."""
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(run(path, results, timeout_s))
    out = html or path.with_suffix(".html")
    out.write_text(body)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--build", action="store_true", help="regenerate the .ipynb, do not run")
    parser.add_argument("--notebook", type=Path, default=NOTEBOOK)
    parser.add_argument("--results", type=Path, default=None, help="results root to report on")
    args = parser.parse_args(argv)
    if args.build:
        print(f"wrote {build(args.notebook)}")
    else:
        print(f"wrote {execute(args.notebook, results=args.results)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
