"""Run a sweep: each cell as its own run, then a summary table (CSV, markdown) and figures."""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path
from typing import Any

from testbed.metrics.run_dir import (
    default_results_root,
    new_run_id,
    read_summary,
    write_json_atomic,
)
from testbed.metrics.time_to_accuracy import level_key, reached
from testbed.spec.experiment import Spec
from testbed.spec.sweep import Sweep, expand, levels

log = logging.getLogger(__name__)

COLUMNS = ("status", "fidelity_level", "final_test_accuracy", "best_test_accuracy", "mean_it_s",
           "wall_time_s")


def tta_columns(level: float) -> tuple[str, str]:
    """The table's columns for one accuracy level: training seconds and steps to reach it."""
    return f"time_to_{level_key(level)}_s", f"steps_to_{level_key(level)}"


def cell_row(labels: dict[str, str], spec: Spec, run: Path | None, levels: list[float],
             error: str = "") -> dict[str, Any]:
    """One table row: the cell's labels, its run's headline numbers and time to each accuracy
    level (blank when not reached), the run path."""
    row: dict[str, Any] = {"cell": spec.name, **labels}
    s = read_summary(run) if run is not None and (run / "summary.json").is_file() else {}
    for key in COLUMNS:
        row[key] = s.get(key, "failed" if key == "status" else "")
    row["stage_bytes_per_step"] = (s.get("transfer") or {}).get("wire_bytes_per_step", "")
    for level in levels:
        hit = reached(s, level) if s.get("status") == "completed" else None
        time_col, steps_col = tta_columns(level)
        row[time_col] = hit.train_s if hit is not None and hit.reached else ""
        row[steps_col] = hit.step if hit is not None and hit.reached else ""
    row["run"] = str(run) if run is not None else ""
    row["error"] = error or s.get("reason", "")
    return row


def pivot(rows: list[dict[str, Any]], axes: list[str], level: float) -> str:
    """Time to `level` as a markdown table: the first grid axis down, the others across
    (e.g. method x link rate); each cell 'seconds (steps)', '-' when not reached."""
    time_col, steps_col = tta_columns(level)
    down, across = axes[0], axes[1:]
    table: dict[str, dict[str, str]] = {}
    for r in rows:
        col = " ".join(str(r[a]) for a in across) or "time"
        hit = r[time_col] != ""
        table.setdefault(r[down], {})[col] = f"{r[time_col]:.1f} s ({r[steps_col]})" if hit else "-"
    cols = list(dict.fromkeys(c for v in table.values() for c in v))
    lines = [f"time to test accuracy {level_key(level)}: training seconds (steps)", "",
             f"| {down} | " + " | ".join(cols) + " |", "|" + "---|" * (len(cols) + 1)]
    lines += [f"| {k} | " + " | ".join(v.get(c, "") for c in cols) + " |" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def to_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v).replace("|", "\\|")


def to_markdown(rows: list[dict[str, Any]]) -> str:
    cols = [c for c in rows[0] if c not in ("run", "error")]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _run_cell(spec: Spec, results_root: Path, progress: bool) -> tuple[Path | None, str]:
    """Run one cell; a failed cell is recorded and the sweep goes on (Ctrl-C stops it)."""
    from testbed.controller.experiment import run_experiment
    from testbed.metrics.run_dir import latest_run

    try:
        return run_experiment(spec, results_root, progress).path, ""
    except Exception as err:  # noqa: BLE001 - the run dir already holds the traceback
        log.error("sweep cell %s failed: %s", spec.name, err)
        return latest_run(spec.name, results_root), f"{type(err).__name__}: {err}"


def run_sweep(sweep: Sweep, scale: str | None = None, results_root: Path | None = None,
              progress: bool = True, overrides: dict[str, Any] | None = None) -> Path:
    """Validate every cell, run each, write results/<sweep>/<id>/{table.csv,table.md,sweep.json,figures}."""
    from testbed.report.figures import accuracy_figure
    from testbed.report.paper import all_figures

    root = results_root or default_results_root()
    cells = expand(sweep, scale, overrides)  # every cell validated before the first one starts
    out = root / sweep.name / new_run_id(cells[0][1].scale)
    out.mkdir(parents=True)
    rows, runs, lvls = [], [], levels(cells)
    for labels, spec in cells:
        run, error = _run_cell(spec, root, progress)
        rows.append(cell_row(labels, spec, run, lvls, error))
        if run is not None and not error:
            runs.append(run)
        write_sweep_files(out, sweep, rows, lvls)  # the tables grow as cells finish
    target = sweep.sweep.target_accuracy or lvls[0]
    figs = all_figures(runs, out / "figures", target_acc=target)
    if runs:
        accuracy_figure(runs, out / "figures" / "accuracy", f"{sweep.name}: {sweep.description}")
    write_json_atomic(out / "sweep.json", {
        "sweep": sweep.model_dump(mode="json"), "rows": rows,
        "figures": {k: [str(p) for p in f.paths] for k, f in figs.items()},
    })
    return out


def write_sweep_files(out: Path, sweep: Sweep, rows: list[dict[str, Any]],
                      lvls: list[float]) -> None:
    """table.csv, and table.md: every cell, then time to each level per the grid's axes."""
    (out / "table.csv").write_text(to_csv(rows))
    title = f"# {sweep.name}\n\n{sweep.description}\n\n"
    axes = list(sweep.sweep.grid)
    pivots = "".join("\n" + pivot(rows, axes, lv) for lv in lvls)
    (out / "table.md").write_text(title + to_markdown(rows) + pivots)
