"""Benchmark `accuracy`: the seed paper's Table 1 (BP vs SG test accuracy per model) at our budget,
with the further methods beside them (local losses, compressed wires, fewer SG targets).

The whole grid (3 models x 7 methods) takes hours on 2 cores; run it in chunks with
TESTBED_BENCH_ONLY (comma-separated shell patterns over "model/method"), e.g.
`TESTBED_BENCH_ONLY='*/bp,*/sg' make bench NAME=accuracy`: every chunk merges its cells into
results/bench/accuracy.json, each cell with the commit and host load it was measured at."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from testbed.bench import BENCHES, bench_dir, command, selected, write_result  # noqa: E402
from testbed.controller.experiment import run_experiment  # noqa: E402
from testbed.metrics import provenance  # noqa: E402
from testbed.metrics.run_dir import read_summary  # noqa: E402
from testbed.spec.load import load_spec  # noqa: E402

MODELS = ("four-layer", "eight-layer", "vgg16")
SEED = {  # seed paper, Table 1: test accuracy after 500K iterations
    "four-layer": {"bp": 0.984, "sg": 0.977},
    "eight-layer": {"bp": 0.992, "sg": 0.924},
    "vgg16": {"bp": 0.994, "sg": 0.845},
}
GAP_TARGET = {"four-layer": 0.01, "eight-layer": 0.02, "vgg16": 0.05}
LOCAL_GAP_TARGET = {"four-layer": 0.01, "eight-layer": 0.01, "vgg16": 0.03}  # BP - local losses
SCALE = "bench"
INT8_FP16 = {"job.wire.activations": "int8", "job.wire.gradients": "fp16",
             "job.wire.scale": "per-channel"}
# label -> (the spec `<model>-<algorithm>`, dotted-path overrides on its bench scale)
METHODS: dict[str, tuple[str, dict[str, Any]]] = {
    "bp": ("bp", {}),
    "sg": ("sg", {}),
    "bp int8/fp16": ("bp", INT8_FP16),  # job.wire: int8 activations, fp16 gradients
    "sg int8/fp16": ("sg", INT8_FP16),
    "sg targets 1/4": ("sg", {"algorithm.sg.target_every": 4}),
    "local": ("local", {}),  # local losses: an auxiliary head per stage, nothing sent back
    "local int8": ("local", {"job.wire.activations": "int8", "job.wire.scale": "per-channel"}),
}
WIRE_COST_TARGET = 0.003  # int8 activations + fp16 gradients cost at most 0.3 point


def run_cell(model: str, method: str, results_root: Path | None,
             overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train `<model>-<algorithm>` at the bench scale with the method's overrides (and any
    further ones, e.g. the seed), in process; its accuracy and cost."""
    algo, method_overrides = METHODS[method]
    spec = load_spec(f"{model}-{algo}", SCALE, {**method_overrides, **(overrides or {})})
    run = run_experiment(spec, results_root, progress=True)
    s = read_summary(run.path)
    return {
        "run": str(run.path), "final": s["final_test_accuracy"], "best": s["best_test_accuracy"],
        "iterations": s["iterations"], "batch_size": spec.training.batch_size,
        "width": spec.model.width, "mean_it_s": s["mean_it_s"], "wall_time_s": s["wall_time_s"],
        "data_source": s["data_source"],
    }


def grid(only: str | None = None) -> list[tuple[str, str]]:
    """(model, method) in run order; `only`: comma-separated patterns over "model/method"."""
    return selected([(m, a) for m in MODELS for a in METHODS], lambda c: f"{c[0]}/{c[1]}", only)


def kept_cells(previous: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """The cells of an earlier result that a chunk adds to: only those that name the commit
    they were measured at (a result from before provenance is not mixed with new cells)."""
    return {m: {a: c for a, c in by.items() if c.get("commit")}
            for m, by in previous.get("cells", {}).items()}


def table(cells: dict[str, dict[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per model with a BP cell: our BP/SG final accuracy and gap next to the seed
    paper's, every further method's accuracy, and what the compressed wire costs BP and SG."""
    rows = []
    for m, c in ((m, c) for m, c in cells.items() if "bp" in c):
        gap = c["bp"]["final"] - c["sg"]["final"] if "sg" in c else None
        wire_cost = {a: c[a]["final"] - c[f"{a} int8/fp16"]["final"]
                     for a in ("bp", "sg") if f"{a} int8/fp16" in c}
        if "local int8" in c:
            wire_cost["local"] = c["local"]["final"] - c["local int8"]["final"]
        local_gap = c["bp"]["final"] - c["local"]["final"] if "local" in c else None
        rows.append({
            "model": m, "bp": c["bp"]["final"], "sg": c.get("sg", {}).get("final"), "gap": gap,
            "gap_target": GAP_TARGET[m], "gap_met": gap is not None and gap <= GAP_TARGET[m],
            "local_gap": local_gap, "local_gap_target": LOCAL_GAP_TARGET[m],
            "local_gap_met": local_gap is not None and local_gap <= LOCAL_GAP_TARGET[m],
            "seed_bp": SEED[m]["bp"], "seed_sg": SEED[m]["sg"],
            "seed_gap": SEED[m]["bp"] - SEED[m]["sg"],
            "iterations": c["bp"]["iterations"], "batch_size": c["bp"]["batch_size"],
            "width": c["bp"]["width"],
            "methods": {label: cell["final"] for label, cell in c.items()},
            "wire_cost": wire_cost, "wire_cost_target": WIRE_COST_TARGET,
            "wire_cost_met": all(v <= WIRE_COST_TARGET for v in wire_cost.values()),
        })
    return rows


def figure(rows: list[dict[str, Any]], out: Path) -> None:
    labels = [a for a in METHODS if any(a in r["methods"] for r in rows)]
    fig, ax = plt.subplots(figsize=(max(8, 1.6 * len(rows) * len(labels) / 2), 4))
    x, width = range(len(rows)), 0.8 / len(labels)
    offset = {a: (k - (len(labels) - 1) / 2) * width for k, a in enumerate(labels)}
    for a in labels:
        have = [(i, r["methods"][a]) for i, r in zip(x, rows, strict=True) if a in r["methods"]]
        ax.bar([i + offset[a] for i, _ in have], [v for _, v in have], width * 0.9,
               label=f"{a.upper() if a in ('bp', 'sg') else a} (ours)")
    for a in (a for a in ("bp", "sg") if a in offset):
        ax.scatter([i + offset[a] for i in x], [r[f"seed_{a}"] for r in rows], marker="_",
                   s=300, c="k", zorder=3, label="seed paper, 500K it" if a == "bp" else None)
    ax.set_xticks(list(x), [f"{r['model']}\n{r['iterations']} it x {r['batch_size']}" for r in rows])
    ax.set_ylim(min(0.8, *(v for r in rows for v in r["methods"].values())) - 0.02, 1.0)
    ax.set_ylabel("test accuracy (MNIST)")
    ax.legend(loc="lower left", fontsize=8)
    ax.set_title("BP vs SG test accuracy (seed Table 1), and further methods")
    fig.savefig(out, dpi=120, bbox_inches="tight")
    plt.close(fig)


def main(results_root: Path | None = None) -> Path:
    """BP vs SG test accuracy per model (the seed paper's Table 1) and further methods, the
    cells TESTBED_BENCH_ONLY selects (all without it) merged into results/bench/accuracy.json."""
    made_by = provenance.start(command("accuracy"))
    out = bench_dir(results_root) / "accuracy.json"
    cells = kept_cells(json.loads(out.read_text()) if out.is_file() else {})
    for model, method in grid(os.environ.get("TESTBED_BENCH_ONLY")):
        cell = run_cell(model, method, results_root)
        cells.setdefault(model, {})[method] = {
            **cell, "command": made_by["command"], "commit": made_by["commit"],
            "dirty": made_by["dirty"], "load": provenance.load_average()}
        rows = table(cells)
        write_result(out, {"rows": rows, "cells": cells}, made_by)  # a killed chunk keeps it
    rows = table(cells)
    figure(rows, out.with_suffix(".png"))
    for r in rows:
        _print(r)
    return out


def _print(r: dict[str, Any]) -> None:
    if r["gap"] is not None:
        print(f"{r['model']:12} BP {r['bp']:.4f}  SG {r['sg']:.4f}  gap {r['gap'] * 100:.2f} "
              f"pt (target <= {r['gap_target'] * 100:.0f}, seed {r['seed_gap'] * 100:.1f})")
    if r["local_gap"] is not None:
        print(f"{r['model']:12} BP - local losses {r['local_gap'] * 100:.2f} pt (target <= "
              f"{r['local_gap_target'] * 100:.0f})")
    others = {a: v for a, v in r["methods"].items() if a not in ("bp", "sg")}
    print("             " + "  ".join(f"{a} {v:.4f}" for a, v in others.items()))


BENCHES.register("accuracy")(main)
