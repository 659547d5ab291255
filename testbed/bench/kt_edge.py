"""Benchmark `kt-edge`: section-kt on 4 edge devices vs the same sections on one (issue 6).

Both cells run `experiments/kt-mnist-edge.yaml` at smoke scale: the teacher on the cloud device
streams every batch's section activations to the student; only the placement of the four student
sections differs (one per edge device, or all on edge0, stepped one after the other). Same
batches, same steps per section, same links; the ratio of training wall times is the target.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from testbed.bench import BENCHES, bench_dir, command, write_result  # noqa: E402
from testbed.bench.kt import time_to  # noqa: E402
from testbed.controller.experiment import run_experiment  # noqa: E402
from testbed.metrics import provenance  # noqa: E402
from testbed.metrics.run_dir import read_metrics, read_summary  # noqa: E402
from testbed.spec.experiment import Spec  # noqa: E402
from testbed.spec.load import load_spec  # noqa: E402

EXPERIMENT, SCALE = "kt-mnist-edge", "smoke"
EDGES = ("edge0", "edge1", "edge2", "edge3")
CELLS = {
    "decoupled": {str(i): d for i, d in enumerate(EDGES)},
    "sequential": {str(i): EDGES[0] for i in range(len(EDGES))},
}


def cell_spec(sections: dict[str, str]) -> Spec:
    spec = load_spec(EXPERIMENT, SCALE)
    return spec.model_copy(update={"placement": {"teacher": "cloud", **sections}})


def run_cell(spec: Spec, root: Path | None) -> dict[str, Any]:
    run = run_experiment(spec, root, progress=False)
    s = read_summary(run.path)
    curve = [{k: r[k] for k in ("step", "test_acc", "wall_s")}
             for r in read_metrics(run.path, "eval")]
    links = [{k: r[k] for k in ("src_worker", "dst_worker", "wire_bytes_per_step",
                                "configured_bps", "link_bound_it_s")}
             for r in s["links"] if r["dst_worker"] != "ps"]
    return {"run": str(run.path), "placement": spec.placement,
            "train_time_s": s["train_time_s"], "mean_it_s": s["mean_it_s"],
            "final": s["final_test_accuracy"], "deployed": s["deployed_test_accuracy"],
            "teacher_test_accuracy": s["kt"]["teacher"]["test_accuracy"],
            "per_worker": s["per_worker"], "links": links,
            "link_bound_it_s": s["link_bound_it_s"], "fidelity_level": s["fidelity_level"],
            "curve": curve}


def figure(cells: dict[str, dict[str, Any]], path: Path) -> None:
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    names = list(cells)
    bars = ax1.bar(names, [cells[n]["train_time_s"] for n in names], color=["#d4752f", "#999"])
    ax1.bar_label(bars, fmt="%.1f s")
    ax1.set_ylabel("training wall time (s)")
    ax1.set_title("4 student sections: 4 edge devices vs 1")
    for n in names:
        c = cells[n]["curve"]
        ax2.plot([p["wall_s"] for p in c], [p["test_acc"] for p in c], marker="o", label=n)
    ax2.set_xlabel("wall time since start (s)")
    ax2.set_ylabel("assembled student test accuracy")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(results_root: Path | None = None) -> Path:
    made_by = provenance.start(command("kt-edge"))
    cells = {name: run_cell(cell_spec(p), results_root) for name, p in CELLS.items()}
    dec, seq = cells["decoupled"], cells["sequential"]
    level = 0.9
    body = {
        "experiment": EXPERIMENT, "scale": SCALE, "cells": cells,
        "time_to_90pct": {n: time_to(c["curve"], level) for n, c in cells.items()},
        "speedup_wall": seq["train_time_s"] / dec["train_time_s"],
        "speedup_it_s": dec["mean_it_s"] / seq["mean_it_s"],
        "target": "decoupled trains faster in wall time than sequential (speedup_wall > 1)",
        "target_met": seq["train_time_s"] > dec["train_time_s"],
    }
    out = bench_dir(results_root)
    write_result(out / "kt-edge.json", body, made_by)
    figure(cells, out / "kt-edge.png")
    for n, c in cells.items():
        print(f"{n:11} {c['train_time_s']:6.1f} s  {c['mean_it_s']:5.1f} it/s  "
              f"acc {c['final']:.4f}  ({c['fidelity_level']})")
    print(f"speedup (wall) {body['speedup_wall']:.2f}x, target met: {body['target_met']}")
    return out / "kt-edge.json"


BENCHES.register("kt-edge")(main)
