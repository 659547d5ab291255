"""Benchmark `pipeline`: it/s of bp-local, bp-sync, bp-pipeline and sg across workers vs bounds."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from testbed.bench import BENCHES, bench_dir  # noqa: E402
from testbed.controller.experiment import run_experiment  # noqa: E402
from testbed.metrics.run_dir import read_summary  # noqa: E402
from testbed.planner.balance import bounds  # noqa: E402
from testbed.planner.corun import corun_stage_times  # noqa: E402
from testbed.planner.split_profile import balanced_split, profile_units, time_stages  # noqa: E402
from testbed.spec.experiment import Spec, parse_spec  # noqa: E402

BATCH = {"four-layer": 128, "eight-layer": 64}  # 1 intra-op thread per worker
STEPS = {"four-layer": 400, "eight-layer": 160}  # optimizer steps per stage, every mode:
# long enough that start-up (process spawn, first transfers) stays out of the steady rate
STAGES = (2, 4)
MODES = ("bp-local", "bp-sync", "bp-pipeline", "sg")
MICRO_BATCHES = (2, 4)  # GPipe micro-batches tried; the faster is bp-pipeline's number
SG = {"lr": 3.0e-3, "kernel": 1}  # linear cDNI module, 1x1 at conv splits (see README)
ACC_MODEL = "four-layer"  # its 2-stage sg run is also the accuracy comparison
TARGETS = {
    "sg_vs_bound": 0.85,
    "sg_vs_bp_pipeline": 1.1,
    "wire_over_raw": 1.02,
    "step_overhead": 1.10,
    "accuracy_gap_points": 1.0,
}


def make_spec(model: str, mode: str, steps: int, split: list[str] | None, micro: int = 2) -> Spec:
    """The benchmark's spec: the smoke-scale SG/BP settings, 1 thread, a final evaluation."""
    algo = "sg" if mode in ("sg", "inprocess-sg") else "bp"
    raw = {
        "name": f"pipeline-{model}-{mode}",
        "model": {"name": model, "split_after": split},
        "algorithm": {"name": algo, "sg": SG},
        "training": {
            "batch_size": BATCH[model],
            "lr": 1.0e-3,
            "iterations": steps,
            "eval_every": steps,
            "log_every": 10,
            "eval_samples": 2000,
            "threads": 1,
        },
        "job": {
            "mode": "inprocess" if mode.startswith("inprocess") else mode,
            "micro_batches": micro,
        },
    }
    return parse_spec(raw, f"bench pipeline {model} {mode}")


def run_one(spec: Spec, root: Path | None) -> dict[str, Any]:
    """Run one spec; the measured numbers the table needs."""
    run = run_experiment(spec, root, progress=False)
    s = read_summary(run.path)
    row = {
        "run": str(run.path),
        "it_s": s["mean_it_s"],
        "final_test_accuracy": s["final_test_accuracy"],
        "wall_time_s": s["wall_time_s"],
    }
    if "transfer" in s:
        row.update(transfer=s["transfer"], per_worker=s["per_worker"])
    return row


def stage_table(spec: Spec, split: list[str]) -> list[dict[str, Any]]:
    """In-process per-step times of the chosen stages as the workers run them (sg and bp)."""
    sg, bp = time_stages(spec, split, "sg"), time_stages(spec, split, "bp")
    return [
        {
            "stage": a.stage,
            "units": list(a.units),
            "sg_step_s": a.step_s,
            "sg_module_s": a.sg_s,
            "sg_total_s": a.total_s,
            "sg_cpu_s": a.cpu_s,
            "bp_step_s": b.step_s,
            "bp_cpu_s": b.cpu_s,
        }
        for a, b in zip(sg, bp, strict=True)
    ]


def step_overhead(table: list[dict[str, Any]], sg_row: dict[str, Any]) -> dict[str, list[float]]:
    """Worker per-step time / the same stage stepped in process, per stage (sg mode).

    wall: compute time per step; cpu: the worker process's CPU per step (all its threads:
    serialization and gRPC included) over the in-process CPU per step. On a shared machine
    only the CPU ratio is free of time spent waiting for a core.
    """
    wall, cpu = [], []
    for t in table:
        w = sg_row["per_worker"].get(f"stage{t['stage']}", {})
        wall.append(w.get("compute_per_step_s", float("nan")) / t["sg_total_s"])
        cpu.append(w.get("process_cpu_per_step_s", float("nan")) / t["sg_cpu_s"])
    return {"wall": wall, "cpu": cpu}


def in_run_bound(sg_row: dict[str, Any]) -> float:
    """1 / max t_i with t_i the compute per step each worker measured in the same run."""
    return 1.0 / max(w["compute_per_step_s"] for w in sg_row["per_worker"].values())


def _pipeline_runs(model: str, split: list[str], root: Path | None) -> dict[str, dict[str, Any]]:
    micro = MICRO_BATCHES if len(split) == 1 else MICRO_BATCHES[-1:]  # 4 stages: M=2 bubbles 60%
    runs = {
        f"bp-pipeline-m{m}": run_one(make_spec(model, "bp-pipeline", STEPS[model], split, m), root)
        for m in micro
    }
    best = max(runs.values(), key=lambda r: r["it_s"])
    return {"bp-pipeline": best, **runs}


def cell(
    model: str,
    k: int,
    split: list[str],
    local: dict[str, Any],
    root: Path | None,
    sg_row: dict[str, Any] | None,
) -> dict[str, Any]:
    """One (model, stage count) row: bounds from the profile, every mode measured."""
    table = stage_table(make_spec(model, "sg", 1, split), split)
    corun = corun_stage_times(make_spec(model, "sg", 1, split), split, k)
    sg_t = [t["sg_total_s"] for t in table]
    bp_t = [t["bp_step_s"] for t in table]
    measured = {
        "bp-local": local,
        "bp-sync": run_one(make_spec(model, "bp-sync", STEPS[model], split), root),
        **_pipeline_runs(model, split, root),
    }
    measured["sg"] = sg_row or run_one(make_spec(model, "sg", STEPS[model], split), root)
    sg_bound, bp_bound = bounds(sg_t), bounds(bp_t)
    cores = os.cpu_count() or 1
    sg, bpp = measured["sg"]["it_s"], measured["bp-pipeline"]["it_s"]
    return {
        "model": model,
        "stages": k,
        "split_after": split,
        "batch_size": BATCH[model],
        "steps": STEPS[model],
        "profile": table,
        "corun_profile": corun,
        "bound": {
            "sg_pipeline_it_s": sg_bound["pipeline_it_s"],
            "sg_sum_over_max": sg_bound["speedup_bound"],
            "bp_one_in_flight_it_s": bp_bound["sequential_it_s"],
            "bp_pipeline_ideal_it_s": bp_bound["pipeline_it_s"],
            "sg_in_run_it_s": in_run_bound(measured["sg"]),
            "sg_corun_it_s": 1.0 / max(c["wall_s"] for c in corun),
            "cpu_cap_it_s": cores / sum(sg_t),
            "cores": cores,
        },
        "measured": measured,
        "ratios": {
            "sg_vs_bound": sg / sg_bound["pipeline_it_s"],
            "sg_vs_in_run_bound": sg / in_run_bound(measured["sg"]),
            "sg_vs_corun_bound": sg * max(c["wall_s"] for c in corun),
            "corun_over_alone": [c["wall_s"] / t for c, t in zip(corun, sg_t, strict=True)],
            "sg_vs_cpu_capped_bound": sg / min(sg_bound["pipeline_it_s"], cores / sum(sg_t)),
            "sg_vs_bp_pipeline": sg / bpp,
            "sg_vs_bp_sync": sg / measured["bp-sync"]["it_s"],
            "sg_vs_bp_local": sg / local["it_s"],
            "bp_sync_vs_bound": measured["bp-sync"]["it_s"] / bp_bound["sequential_it_s"],
            "wire_over_raw": measured["sg"]["transfer"]["wire_over_raw"],
            "step_overhead": step_overhead(table, measured["sg"]),
            "step_overhead_vs_corun": step_overhead(
                [{**t, "sg_total_s": c["wall_s"], "sg_cpu_s": c["cpu_s"]}
                 for t, c in zip(table, corun, strict=True)], measured["sg"]),
        },
    }


def accuracy(split: list[str], root: Path | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Distributed sg vs in-process sg, same split, seed and step count (also a throughput run)."""
    dist = run_one(make_spec(ACC_MODEL, "sg", STEPS[ACC_MODEL], split), root)
    inproc = run_one(make_spec(ACC_MODEL, "inprocess-sg", STEPS[ACC_MODEL], split), root)
    gap = 100 * (inproc["final_test_accuracy"] - dist["final_test_accuracy"])
    return dist, {
        "steps": STEPS[ACC_MODEL],
        "split_after": split,
        "distributed_sg": dist["final_test_accuracy"],
        "inprocess_sg": inproc["final_test_accuracy"],
        "gap_points": gap,
        "inprocess_it_s": inproc["it_s"],
    }


def figure(rows: list[dict[str, Any]], out: Path) -> None:
    """it/s per mode for each (model, stages), with the bounds drawn as lines."""
    fig, axes = plt.subplots(1, len(rows), figsize=(3.4 * len(rows), 4), squeeze=False)
    for ax, r in zip(axes[0], rows, strict=True):
        vals = [r["measured"][m]["it_s"] for m in MODES]
        ax.bar(range(len(MODES)), vals, color=["#999", "#6a9fd4", "#2f6db3", "#d4752f"])
        b = r["bound"]
        ax.axhline(b["sg_pipeline_it_s"], ls="--", c="#d4752f", lw=1, label="sg: 1/max t (profile)")
        ax.axhline(b["sg_in_run_it_s"], ls="-", c="#d4752f", lw=0.8, label="sg: 1/max t (in run)")
        ax.axhline(b["sg_corun_it_s"], ls="-", c="#7a3", lw=0.8, label="sg: 1/max t (co-run)")
        ax.axhline(b["bp_one_in_flight_it_s"], ls=":", c="#2f6db3", lw=1, label="bp: 1/sum t")
        ax.axhline(b["cpu_cap_it_s"], ls="-.", c="k", lw=0.8, label="cores/sum t")
        ax.set_xticks(range(len(MODES)), MODES, rotation=30, fontsize=8)
        ax.set_title(f"{r['model']}, {r['stages']} stages, batch {r['batch_size']}", fontsize=9)
    axes[0][0].set_ylabel("it/s (optimizer steps per stage)")
    axes[0][0].legend(fontsize=7, loc="upper left")
    fig.suptitle(
        "pipeline benchmark: 1 intra-op thread per worker, gRPC on loopback, 2 cores",
        fontsize=10,
        y=1.02,
    )
    fig.savefig(out, dpi=120, bbox_inches="tight")
    plt.close(fig)


def main(results_root: Path | None = None, models: tuple[str, ...] = tuple(BATCH)) -> Path:
    from testbed.runtime.replica import configure_threads

    configure_threads(1)
    started, load = time.time(), os.getloadavg()
    rows, acc = [], None
    for model in models:
        units = profile_units(make_spec(model, "sg", 1, None))
        local = run_one(make_spec(model, "bp-local", STEPS[model], None), results_root)
        for k in STAGES:
            split, balanced = balanced_split(units, k)
            sg_row = None
            if model == ACC_MODEL and k == 2:
                sg_row, acc = accuracy(split, results_root)
            row = cell(model, k, split, local, results_root, sg_row)
            row["unit_profile"] = {
                "units": units.units,
                "unit_s": units.unit_s,
                "sg_s": units.sg_s,
                "balanced_stage_s": balanced.stage_times,
            }
            rows.append(row)
            _print_row(row)
    out = bench_dir(results_root)
    body = {
        "rows": rows,
        "accuracy": acc,
        "targets": TARGETS,
        "micro_batches": MICRO_BATCHES,
        "command": "make bench NAME=pipeline",
        "wall_s": time.time() - started,
        "loadavg_start": load,
        "loadavg_end": os.getloadavg(),
    }
    (out / "pipeline.json").write_text(json.dumps(body, indent=2) + "\n")
    figure(rows, out / "pipeline.png")
    if acc:
        print(
            f"accuracy after {acc['steps']} steps: distributed sg {acc['distributed_sg']:.4f}, "
            f"in-process sg {acc['inprocess_sg']:.4f} (gap {acc['gap_points']:.2f} pt)"
        )
    return out / "pipeline.json"


def _print_row(r: dict[str, Any]) -> None:
    its = "  ".join(f"{m} {r['measured'][m]['it_s']:.2f}" for m in MODES)
    ratios = r["ratios"]
    print(
        f"{r['model']} x{r['stages']} split {r['split_after']}: {its} it/s | sg/bound "
        f"{ratios['sg_vs_bound']:.2f} (bound {r['bound']['sg_pipeline_it_s']:.2f}; in-run "
        f"{ratios['sg_vs_in_run_bound']:.2f}; co-run {ratios['sg_vs_corun_bound']:.2f}), sg/bp-pipeline "
        f"{ratios['sg_vs_bp_pipeline']:.2f}, wire/raw {ratios['wire_over_raw']:.4f}, step overhead "
        f"wall {', '.join(f'{x:.2f}' for x in ratios['step_overhead']['wall'])} cpu "
        f"{', '.join(f'{x:.2f}' for x in ratios['step_overhead']['cpu'])}",
        flush=True,
    )


BENCHES.register("pipeline")(main)
