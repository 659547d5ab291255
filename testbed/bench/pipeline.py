"""Benchmark `pipeline`: it/s of bp-local, bp-sync, bp-pipeline and sg across workers vs bounds.

Fair by construction (`bench.fair`): each cell's bp-local gets as many intra-op threads as the
distributed run has cores (min(stages, cores)); sg is compared with the strongest of bp-local,
bp-sync and bp-pipeline; "of bound" means the profile bound only (the in-run and co-run bounds
are diagnostics); every mode's test accuracy after the same optimizer steps stands beside its
it/s; a cell whose ratio lies near its target is measured again (sg and its BP alternating).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from testbed.bench import (  # noqa: E402
    BENCHES,
    bench_dir,
    command,
    fair,
    like_a_worker,
    write_result,
)
from testbed.controller.experiment import run_experiment  # noqa: E402
from testbed.metrics import provenance  # noqa: E402
from testbed.metrics.run_dir import read_summary  # noqa: E402
from testbed.models import get_model  # noqa: E402
from testbed.planner.balance import bounds  # noqa: E402
from testbed.planner.corun import corun_stage_times  # noqa: E402
from testbed.planner.split_profile import (  # noqa: E402
    UnitProfile,
    balanced_split,
    profile_units,
    time_stages,
)
from testbed.spec.experiment import Spec  # noqa: E402
from testbed.spec.load import parse_spec  # noqa: E402

BATCH = {"four-layer": 128, "eight-layer": 64}  # 1 intra-op thread per worker
STEPS = {"four-layer": 400, "eight-layer": 160}  # optimizer steps per stage, every mode:
# long enough that start-up (process spawn, first transfers) stays out of the steady rate
STAGES = (2, 4)
MODES = ("bp-local", "bp-sync", "bp-pipeline", "sg")
MICRO_BATCHES = (2, 4)  # GPipe micro-batches tried; the faster is bp-pipeline's number
SG = {"lr": 3.0e-3, "kernel": 1}  # linear cDNI module, 1x1 at conv splits (docs/benchmarks.md)
ACC_MODEL = "four-layer"  # its 2-stage sg run is also the accuracy comparison
EVAL_SAMPLES = 10_000  # the whole MNIST test set, once at the end of every run
TARGETS = {
    "sg_vs_bound": 0.85,  # the profile bound
    "sg_vs_bp": 1.1,  # the strongest BP with the same cores
    "wire_over_raw": 1.02,
    "step_overhead": 1.10,
    "accuracy_gap_points": 1.0,
}


def make_spec(
    model: str, mode: str, steps: int, split: list[str] | None, micro: int = 2, threads: int = 1
) -> Spec:
    """The benchmark's spec: the smoke-scale SG/BP settings, `threads` intra-op threads per
    worker, one evaluation on the whole test set at the end."""
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
            "eval_samples": EVAL_SAMPLES,
            "threads": threads,
        },
        "job": {
            "mode": "inprocess" if mode.startswith("inprocess") else mode,
            "micro_batches": micro,
        },
    }
    return parse_spec(raw, f"bench pipeline {model} {mode} threads={threads}")


def blocks_of(units: UnitProfile, model: str) -> UnitProfile:
    """The unit profile summed per block (a block's step time: its units'; its SG module: the
    one after its last unit). The benches split at block boundaries, as the seed paper did;
    layer-level splits are the partitioner's (`testbed plan`): balancing compute alone over
    layers chose, for four-layer x2, to cut before the pool and send 4x the bytes."""
    owner = {u.name: u.block for u in get_model(model).units}
    names = [owner[n] for n in units.units]
    blocks = list(dict.fromkeys(names))
    step = [sum(s for n, s in zip(names, units.unit_s, strict=True) if n == b) for b in blocks]
    ends = [max(i for i, n in enumerate(names) if n == b) for b in blocks[:-1]]
    return UnitProfile(tuple(blocks), tuple(step), tuple(units.sg_s[i] for i in ends))


def cores_of(stages: int) -> int:
    """Cores a run of `stages` one-thread workers can use here: bp-local gets this many threads."""
    return min(stages, os.cpu_count() or 1)


def run_one(spec: Spec, root: Path | None) -> dict[str, Any]:
    """Run one spec; the measured numbers the table needs, and how to run it again."""
    run = run_experiment(spec, root, progress=False)
    s = read_summary(run.path)
    row = {
        "run": str(run.path),
        "mode": spec.job.mode,
        "threads": spec.training.threads,
        "micro_batches": spec.job.micro_batches,
        "it_s": s["mean_it_s"],
        "final_test_accuracy": s["final_test_accuracy"],
        "steps": s["iterations"],
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
    return {"bp-pipeline": copy.deepcopy(best), **runs}


def _again(model: str, split: list[str], row: dict[str, Any], root: Path | None) -> float:
    """Run a measured mode once more, as it ran; its it/s."""
    spec = make_spec(model, row["mode"], STEPS[model], None if row["mode"] == "bp-local" else split,
                     row["micro_batches"], row["threads"] or 1)  # fmt: skip
    return float(run_one(spec, root)["it_s"])


def cell(
    model: str,
    k: int,
    split: list[str],
    local: dict[int, dict[str, Any]],
    root: Path | None,
    sg_row: dict[str, Any] | None,
) -> dict[str, Any]:
    """One (model, stage count) row: every mode measured; sg against the strongest BP with the
    same cores and against the profile bound, the other bounds as diagnostics."""
    table = stage_table(make_spec(model, "sg", 1, split), split)
    corun = corun_stage_times(make_spec(model, "sg", 1, split), split, k)
    sg_t = [t["sg_total_s"] for t in table]
    bp_t = [t["bp_step_s"] for t in table]
    cores = cores_of(k)
    measured = {
        "bp-local": copy.deepcopy(local[cores]),  # repeats stay with this cell
        "bp-sync": run_one(make_spec(model, "bp-sync", STEPS[model], split), root),
        **_pipeline_runs(model, split, root),
    }
    measured["sg"] = sg_row or run_one(make_spec(model, "sg", STEPS[model], split), root)
    sg_bound, bp_bound = bounds(sg_t), bounds(bp_t)
    profile_bound = sg_bound["pipeline_it_s"]
    repeated = fair.repeat_sg_near_targets(measured, profile_bound, TARGETS,
                                           lambda row: _again(model, split, row, root))
    modes = {m: r for m, r in measured.items() if m in MODES}
    return {
        "model": model, "stages": k, "split_after": split, "batch_size": BATCH[model],
        "steps": STEPS[model], "cores": cores, "bp_local_threads": cores,
        "profile": table, "corun_profile": corun,
        "bound": {
            "sg_profile_it_s": profile_bound,
            "sg_sum_over_max": sg_bound["speedup_bound"],
            "bp_one_in_flight_it_s": bp_bound["sequential_it_s"],
            "bp_pipeline_ideal_it_s": bp_bound["pipeline_it_s"],
        },
        "measured": measured,
        "accuracy": {m: r["final_test_accuracy"] for m, r in modes.items()},
        "repeated_for": repeated,
        "ratios": {
            "sg_vs_bound": fair.versus_bound(measured["sg"], profile_bound),
            "sg_vs_bp": fair.versus_bp(modes),
            "wire_over_raw": measured["sg"]["transfer"]["wire_over_raw"],
            "step_overhead": step_overhead(table, measured["sg"]),
        },
        "diagnostics": diagnostics(measured, local[1], table, corun, cores, bp_bound),
    }  # fmt: skip


def diagnostics(
    measured: dict[str, dict[str, Any]], local_1: dict[str, Any], table: list[dict[str, Any]],
    corun: list[dict[str, Any]], cores: int, bp_bound: dict[str, float],
) -> dict[str, Any]:
    """The bounds and ratios that explain a cell but judge no target: sg against the in-run,
    co-run and core-capped bounds, against each BP, and bp-local on one thread."""
    sg = measured["sg"]["it_s"]
    sg_t = [t["sg_total_s"] for t in table]
    cpu_per_step = sum(w.get("process_cpu_per_step_s", 0.0)
                       for w in measured["sg"]["per_worker"].values())  # fmt: skip
    in_run, co_run = in_run_bound(measured["sg"]), 1.0 / max(c["wall_s"] for c in corun)
    cpu_cap = cores / sum(sg_t)
    return {
        # the share of the machine the sg workers used: well under min(stages, cores) / cores
        # means they were waiting for CPU that something outside the run held
        "sg_workers_machine_share": cpu_per_step * sg / (os.cpu_count() or 1),
        "sg_in_run_bound_it_s": in_run, "sg_corun_bound_it_s": co_run, "cpu_cap_it_s": cpu_cap,
        "sg_vs_in_run_bound": sg / in_run, "sg_vs_corun_bound": sg / co_run,
        "sg_vs_cpu_capped_bound": sg / min(1.0 / max(sg_t), cpu_cap),
        "corun_over_alone": [c["wall_s"] / t for c, t in zip(corun, sg_t, strict=True)],
        "bp_local_1thread": {"it_s": local_1["it_s"],
                             "final_test_accuracy": local_1["final_test_accuracy"]},
        "sg_vs_each": {m: sg / r["it_s"] for m, r in
                       [*((m, measured[m]) for m in fair.BP_MODES), ("bp-local-1thread", local_1)]},
        "bp_sync_vs_bound": measured["bp-sync"]["it_s"] / bp_bound["sequential_it_s"],
        "step_overhead_vs_corun": step_overhead(
            [{**t, "sg_total_s": c["wall_s"], "sg_cpu_s": c["cpu_s"]}
             for t, c in zip(table, corun, strict=True)], measured["sg"]),
    }  # fmt: skip


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
    """it/s per mode for each (model, stages): the profile bound dashed, diagnostics thin."""
    fig, axes = plt.subplots(1, len(rows), figsize=(3.4 * len(rows), 4), squeeze=False)
    for ax, r in zip(axes[0], rows, strict=True):
        names = [f"bp-local\n{r['bp_local_threads']} thr", "bp-sync", "bp-pipeline", "sg"]
        vals = [r["measured"][m]["it_s"] for m in MODES]
        ax.bar(range(len(MODES)), vals, color=["#999", "#6a9fd4", "#2f6db3", "#d4752f"])
        for i, m in enumerate(MODES):
            ax.text(i, vals[i], f"{r['accuracy'][m]:.3f}", ha="center", va="bottom", fontsize=6)
        b, d = r["bound"], r["diagnostics"]
        ax.axhline(b["sg_profile_it_s"], ls="--", c="#d4752f", lw=1, label="sg bound: 1/max t (profile)")
        ax.axhline(d["sg_in_run_bound_it_s"], ls="-", c="#d4752f", lw=0.6, label="in-run (diagnostic)")
        ax.axhline(d["sg_corun_bound_it_s"], ls="-", c="#7a3", lw=0.6, label="co-run (diagnostic)")
        ax.axhline(d["bp_local_1thread"]["it_s"], ls=":", c="#555", lw=0.8, label="bp-local, 1 thread")
        ax.set_xticks(range(len(MODES)), names, rotation=30, fontsize=7)
        ax.set_title(f"{r['model']}, {r['stages']} stages, batch {r['batch_size']}", fontsize=9)
    axes[0][0].set_ylabel("it/s per stage (bar labels: test accuracy)")
    fig.legend(*axes[0][0].get_legend_handles_labels(), loc="lower center", ncol=4, fontsize=7,
               bbox_to_anchor=(0.5, -0.06))  # fmt: skip
    fig.suptitle("pipeline benchmark: 1 intra-op thread per worker (bp-local: one per core used), "
                 "gRPC on loopback", fontsize=9, y=1.02)  # fmt: skip
    fig.savefig(out, dpi=120, bbox_inches="tight")
    plt.close(fig)


def main(results_root: Path | None = None, models: tuple[str, ...] = tuple(BATCH)) -> Path:
    from testbed.runtime.replica import configure_threads

    configure_threads(1)
    like_a_worker()  # the profile bound: stages stepped as a worker steps them
    made_by = provenance.start(command("pipeline"))
    rows, acc = [], None
    for model in models:
        units = blocks_of(profile_units(make_spec(model, "sg", 1, None)), model)
        local = {
            t: run_one(make_spec(model, "bp-local", STEPS[model], None, threads=t), results_root)
            for t in sorted({1, *(cores_of(k) for k in STAGES)})
        }
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
        "rows": rows, "accuracy": acc, "targets": TARGETS, "micro_batches": MICRO_BATCHES,
        "eval_samples": EVAL_SAMPLES,
        "fairness": {"bp_local_threads": "min(stages, cores)", "bp": "strongest of " + ", ".join(
            fair.BP_MODES), "bound": "profile", "near_target": fair.NEAR,
            "repeats_near_target": fair.REPEATS},
    }  # fmt: skip
    write_result(out / "pipeline.json", body, made_by)
    figure(rows, out / "pipeline.png")
    if acc:
        print(
            f"accuracy after {acc['steps']} steps: distributed sg {acc['distributed_sg']:.4f}, "
            f"in-process sg {acc['inprocess_sg']:.4f} (gap {acc['gap_points']:.2f} pt)"
        )
    return out / "pipeline.json"


def _print_row(r: dict[str, Any]) -> None:
    its = "  ".join(f"{m} {r['measured'][m]['it_s']:.2f} ({r['accuracy'][m]:.4f})" for m in MODES)
    ratios = r["ratios"]
    vs_bp = ratios["sg_vs_bp"]
    print(
        f"{r['model']} x{r['stages']} split {r['split_after']}: {its} it/s (test acc) | "
        f"sg/profile bound {ratios['sg_vs_bound']['median']:.2f} "
        f"(bound {r['bound']['sg_profile_it_s']:.2f}), sg/{vs_bp['bp']} {vs_bp['it_s']['median']:.2f} "
        f"(n={vs_bp['it_s']['n']}), wire/raw {ratios['wire_over_raw']:.4f}, step overhead wall "
        f"{', '.join(f'{x:.2f}' for x in ratios['step_overhead']['wall'])}",
        flush=True,
    )


BENCHES.register("pipeline")(main)
