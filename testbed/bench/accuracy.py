"""Benchmark `accuracy`: the seed paper's Table 1 (BP vs SG test accuracy per model) at our budget."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from testbed.bench import BENCHES, bench_dir, command, write_result  # noqa: E402
from testbed.controller.experiment import run_experiment  # noqa: E402
from testbed.metrics import provenance  # noqa: E402
from testbed.metrics.run_dir import read_summary  # noqa: E402
from testbed.spec.experiment import load_spec  # noqa: E402

MODELS = ("four-layer", "eight-layer", "vgg16")
SEED = {  # seed paper, Table 1: test accuracy after 500K iterations
    "four-layer": {"bp": 0.984, "sg": 0.977},
    "eight-layer": {"bp": 0.992, "sg": 0.924},
    "vgg16": {"bp": 0.994, "sg": 0.845},
}
GAP_TARGET = {"four-layer": 0.01, "eight-layer": 0.02, "vgg16": 0.05}
SCALE = "bench"


def run_cell(model: str, algo: str, results_root: Path | None) -> dict[str, Any]:
    spec = load_spec(f"{model}-{algo}", SCALE)
    run = run_experiment(spec, results_root, progress=True)
    s = read_summary(run.path)
    return {
        "run": str(run.path), "final": s["final_test_accuracy"], "best": s["best_test_accuracy"],
        "iterations": s["iterations"], "batch_size": spec.training.batch_size,
        "width": spec.model.width, "mean_it_s": s["mean_it_s"], "wall_time_s": s["wall_time_s"],
        "data_source": s["data_source"],
    }


def table(cells: dict[str, dict[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per model: our BP/SG final accuracy and gap next to the seed paper's."""
    rows = []
    for m, c in cells.items():
        gap = c["bp"]["final"] - c["sg"]["final"]
        rows.append({
            "model": m, "bp": c["bp"]["final"], "sg": c["sg"]["final"], "gap": gap,
            "gap_target": GAP_TARGET[m], "gap_met": gap <= GAP_TARGET[m],
            "seed_bp": SEED[m]["bp"], "seed_sg": SEED[m]["sg"],
            "seed_gap": SEED[m]["bp"] - SEED[m]["sg"],
            "iterations": c["bp"]["iterations"], "batch_size": c["bp"]["batch_size"],
            "width": c["bp"]["width"],
        })
    return rows


def figure(rows: list[dict[str, Any]], out: Path) -> None:
    fig, ax = plt.subplots(figsize=(8, 4))
    x = range(len(rows))
    ax.bar([i - 0.2 for i in x], [r["bp"] for r in rows], 0.4, label="BP (ours)")
    ax.bar([i + 0.2 for i in x], [r["sg"] for r in rows], 0.4, label="SG (ours)")
    ax.scatter([i - 0.2 for i in x], [r["seed_bp"] for r in rows], marker="_", s=400, c="k",
               label="seed paper, 500K it", zorder=3)
    ax.scatter([i + 0.2 for i in x], [r["seed_sg"] for r in rows], marker="_", s=400, c="k", zorder=3)
    ax.set_xticks(list(x), [f"{r['model']}\n{r['iterations']} it x {r['batch_size']}" for r in rows])
    ax.set_ylim(min(0.8, *(r["sg"] for r in rows)) - 0.02, 1.0)
    ax.set_ylabel("test accuracy (MNIST)")
    ax.legend(loc="lower left", fontsize=8)
    ax.set_title("BP vs SG test accuracy (seed Table 1)")
    fig.savefig(out, dpi=120, bbox_inches="tight")
    plt.close(fig)


def main(results_root: Path | None = None, models: tuple[str, ...] = MODELS) -> Path:
    made_by = provenance.start(command("accuracy"))
    cells = {m: {a: run_cell(m, a, results_root) for a in ("bp", "sg")} for m in models}
    rows = table(cells)
    out = bench_dir(results_root)
    write_result(out / "accuracy.json", {"rows": rows, "cells": cells}, made_by)
    figure(rows, out / "accuracy.png")
    for r in rows:
        print(f"{r['model']:12} BP {r['bp']:.4f}  SG {r['sg']:.4f}  gap {r['gap'] * 100:.2f} pt "
              f"(target <= {r['gap_target'] * 100:.0f}, seed {r['seed_gap'] * 100:.1f})")
    return out / "accuracy.json"


BENCHES.register("accuracy")(main)
