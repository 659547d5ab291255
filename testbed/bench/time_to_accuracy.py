"""Benchmark `time-to-accuracy`: which training method reaches test accuracy 0.9 / 0.95 / 0.98
first on four emulated edge devices (0.4 CPU / 1 GB each, local backend) at 1 Gbit, 100 Mbit
and 10 Mbit access links, four-layer and eight-layer.

Every cell is a real distributed run (`make experiment`-style, through the controller); its
summary gives the training seconds and steps to each level (`testbed.metrics.time_to_accuracy`),
it/s, bytes per step on every link and the accuracy at the end of its budget. At 1 Gbit every
method gets the same step budget. A slow-link cell gets the steps that fit `CAP_S` at the rate
its own method measured one rate faster (the busiest link's bits per step over the new rate),
at most that budget: a method that has not reached a level by then is reported as not reached
within its training time, and ratios against it become bounds. The parameter server observes
from the host (its evaluation pushes bypass the links: `RunCluster.leave_observer_unshaped`).

The grid is long on a 2-core host; run it in chunks of cells (each under ~20 min) with
TESTBED_BENCH_ONLY (comma-separated shell patterns over "model/rate/method"), e.g.
`TESTBED_BENCH_ONLY='four-layer/1gbit/*' make bench NAME=time-to-accuracy`; every chunk merges
its cells into results/bench/time-to-accuracy.json and redraws the figure from all of them.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from testbed.bench import BENCHES, bench_dir, command, selected, write_result  # noqa: E402
from testbed.emulation.units import parse_rate  # noqa: E402
from testbed.metrics import provenance  # noqa: E402
from testbed.metrics.run_dir import read_summary  # noqa: E402
from testbed.spec.experiment import JobCfg, SGCfg, Spec  # noqa: E402
from testbed.spec.load import parse_spec  # noqa: E402
from testbed.spec.sweep import set_path  # noqa: E402

NAME = "time-to-accuracy"
CPUS, MEMORY, DEVICES = 0.4, "1g", 4
BATCH, LR, EVALS = 128, 1.0e-3, 16  # about EVALS evaluations per cell (at least)
EVAL_EVERY_MAX = 50  # and one every 50 steps at most apart: the resolution of "steps to a level"
RATES = ("1gbit", "100mbit", "10mbit")
LEVELS = [0.9, 0.95, 0.98]
MODELS: dict[str, list[str] | None] = {  # split after: the seed's, and edge-pipeline's balance
    "four-layer": None, "eight-layer": ["block1", "block2", "block3"]}
# the quick form (named in TESTBED_BENCH_ONLY, never in the full grid): four-layer cut after fc1
# on 2 devices, a 128 KB activation per step instead of the seed split's 3.2 MB, so a 10 Mbit
# cell takes about 2 minutes: `TESTBED_BENCH_ONLY='quick/*' make bench NAME=time-to-accuracy`
QUICK = {"quick": ("four-layer", ["fc1"])}
STEPS = {"four-layer": 1600, "eight-layer": 500, "quick": 400}  # the budget at 1 Gbit (and the most
# anywhere); four-layer: enough that sg too reaches 0.95 at 1 Gbit (at 800 it ended at 0.9425)
CAP_S = {"100mbit": 300.0, "10mbit": 420.0}  # training seconds a slow-link cell is sized for
SG = {"conditioned": True, "depth": 0, "width": 64, "lr": 3.0e-3}
BP = ("bp-sync", "bp-pipeline")  # distributed backprop on the same devices
TARGET_RATIO = 0.5  # best decoupled time to 0.95 at 10 Mbit / strongest distributed BP's


def methods() -> dict[str, dict[str, Any]]:
    """Method -> the spec overrides (dotted paths) that make it; compressed wires (int8
    activations, fp16 gradients) and sparse SG targets (one true-gradient target in 4) only
    where this checkout's spec has them (`job.wire`, `algorithm.sg.target_every`)."""
    out: dict[str, dict[str, Any]] = {
        "bp-local": {"job.mode": "bp-local", "algorithm.name": "bp"},
        "bp-sync": {"job.mode": "bp-sync", "algorithm.name": "bp"},
        "bp-pipeline": {"job.mode": "bp-pipeline", "algorithm.name": "bp"},
        "sg": {"job.mode": "sg", "algorithm.name": "sg"},
        "local": {"job.mode": "local", "algorithm.name": "local"},
    }
    if "wire" in JobCfg.model_fields:
        wire = {"activations": "int8", "gradients": "fp16"}
        out["sg+compression"] = {**out["sg"], "job.wire": wire}
        out["local+compression"] = {**out["local"], "job.wire": {"activations": "int8"}}
    if "target_every" in SGCfg.model_fields:
        out["sg+sparse-targets"] = {**out["sg"], "algorithm.sg.target_every": 4}
    return out


def decoupled(method: str) -> bool:
    return method.startswith(("sg", "local"))


def cell_id(model: str, rate: str, method: str) -> str:
    return f"{model}/{rate}/{method}"


def grid(only: str | None = None) -> list[tuple[str, str, str]]:
    """(model, rate, method) in run order (a method's faster rates first); `only`: patterns."""
    models = [*MODELS, *QUICK] if only else list(MODELS)
    cells = [(m, r, k) for m in models for k in methods() for r in RATES
             if not (k == "bp-local" and r != RATES[0])]  # one device: no link to vary
    return selected(cells, lambda c: cell_id(*c), only)


def planned_steps(model: str, rate: str, faster: dict[str, Any] | None,
                  link_s: float | None = None) -> int:
    """The step budget of a cell: the model's budget at 1 Gbit; on a slow link the steps that
    fit CAP_S at the rate the same method measured one rate faster, scaled down to this link
    where that link was the limit (its busiest link's bits per step / this rate), at most
    the model's budget (and at least 2 evaluations' worth). Without a faster cell (a chunk of
    slow-link cells alone): the steps that fit CAP_S at `link_s` seconds per step on the link
    (`link_seconds`; compute not counted, so such a cell trains at least about CAP_S)."""
    budget = STEPS[model]
    if rate not in CAP_S:
        return budget
    if faster is not None:
        it_s = faster["mean_it_s"]
        bits = faster.get("busiest_link_bits_per_step")
        if bits:
            it_s = min(it_s, parse_rate(rate) / bits)
    elif link_s:
        it_s = 1.0 / link_s
    else:
        return budget
    return max(2 * EVALS, min(budget, int(CAP_S[rate] * it_s)))


_ELEMENT_BYTES = {"fp32": 4, "fp16": 2, "int8": 1}


def link_seconds(boundary_elements: list[int], mode: str, wire: dict[str, str],
                 rate: str) -> float:
    """Seconds per step the busiest boundary's messages take on links at `rate` in job.mode
    `mode`: the activation forward, plus the gradient (or SG target) back where the mode sends
    one (not local). Backprop sends the gradients only after the whole forward pass (bp-sync,
    and bp-pipeline too: GPipe flushes the pipeline every step), so its two directions add up;
    sg overlaps them (full-duplex links)."""
    biggest = max(boundary_elements, default=0)
    fwd = biggest * _ELEMENT_BYTES[wire.get("activations", "fp32")]
    bwd = 0 if mode == "local" else biggest * _ELEMENT_BYTES[wire.get("gradients", "fp32")]
    per_step = fwd + bwd if mode in BP else max(fwd, bwd)
    return 8.0 * per_step / parse_rate(rate)


def boundary_elements(spec: Spec) -> list[int]:
    """Elements per step of the activation out of every stage but the last."""
    from testbed.planner.split_profile import build

    stages, _, _ = build(spec, spec.model.split_after)
    return [spec.training.batch_size * math.prod(s.output_shape) for s in stages[:-1]]


def make_spec(model: str, rate: str, method: str, steps: int) -> Spec:
    """Four 0.4-CPU edge devices (one for bp-local; the quick form's one per stage), stage i on
    edge<i>, links at `rate`."""
    zoo, split = QUICK.get(model, (model, MODELS.get(model)))
    n = DEVICES if split is None else len(split) + 1
    names = [f"edge{i}" for i in range(1 if method == "bp-local" else n)]
    raw: dict[str, Any] = {
        "name": f"tta-{model}-{rate}-{method.replace('+', '-')}",
        "model": {"name": zoo, "split_after": split},
        "algorithm": {"name": "sg", "sg": dict(SG)},
        "training": {"batch_size": BATCH, "lr": LR, "iterations": steps, "threads": 1,
                     "eval_every": max(1, min(EVAL_EVERY_MAX, steps // EVALS)), "log_every": 10, "eval_samples": 2000},
        "job": {"mode": "sg", "micro_batches": 4, "startup_timeout_s": 300},
        "cluster": {"backend": "local",
                    "devices": [{"name": n, "profile": "edge", "cpus": CPUS, "memory": MEMORY}
                                for n in names],
                    "links": [{"device": n, "rate": rate} for n in names] if len(names) > 1
                    else []},
        "report": {"accuracy_levels": LEVELS},
    }  # fmt: skip
    for path, value in methods()[method].items():
        set_path(raw, path, value)
    return parse_spec(raw, f"bench {NAME} {cell_id(model, rate, method)}")


def cell_steps(cells: dict[str, dict[str, Any]], model: str, rate: str, method: str) -> int:
    """`planned_steps` for a cell, from the same method's cell one rate faster where the
    results have it, else from the link time of the cell's own messages."""
    faster = cells.get(cell_id(model, RATES[RATES.index(rate) - 1], method)) \
        if rate != RATES[0] else None
    link_s = None
    if rate in CAP_S and faster is None:
        spec = make_spec(model, rate, method, STEPS[model])
        link_s = link_seconds(boundary_elements(spec), spec.job.mode, spec.job.wire.model_dump(),
                              rate)
    return planned_steps(model, rate, faster, link_s)


def measure(spec: Spec, root: Path | None) -> dict[str, Any]:
    """Run one cell; what the table and the targets need from its summary."""
    from testbed.controller.experiment import run_experiment

    run = run_experiment(spec, root, progress=False)
    s = read_summary(run.path)
    links = [r for r in s.get("links", []) if r.get("dst_worker") != "ps"]
    busiest = max((r.get("wire_bytes_per_step", 0.0) for r in links), default=0.0)
    return {
        "run": str(run.path), "iterations": s["iterations"], "mean_it_s": s["mean_it_s"],
        "final_test_accuracy": s["final_test_accuracy"], "train_time_s": s["train_time_s"],
        "wall_time_s": s["wall_time_s"], "time_to_accuracy": s["time_to_accuracy"],
        "evaluations": s["evaluations"], "fidelity_level": s.get("fidelity_level"),
        "wire_bytes_per_step": (s.get("transfer") or {}).get("wire_bytes_per_step"),
        "busiest_link_bits_per_step": 8 * busiest or None, "links": links,
        "link_bound_it_s": s.get("link_bound_it_s"),
    }  # fmt: skip


def reached(cell: dict[str, Any], level: float) -> float | None:
    entry = next((e for e in cell["time_to_accuracy"] if abs(e["level"] - level) < 1e-9), None)
    return None if entry is None else entry["train_s"]


def ratio(decoupled_cell: dict[str, Any], bp_cell: dict[str, Any], level: float) -> dict[str, Any]:
    """Decoupled time / BP time to `level`; a bound ('<=') when BP did not get there within its
    training time, None when the decoupled method did not get there."""
    t_dec, t_bp = reached(decoupled_cell, level), reached(bp_cell, level)
    if t_dec is None:
        return {"value": None, "kind": "decoupled method did not reach the level"}
    if t_bp is None:
        return {"value": t_dec / bp_cell["train_time_s"], "kind": "<=",
                "note": f"BP had not reached {level} after {bp_cell['train_time_s']:.0f} s"}
    return {"value": t_dec / t_bp, "kind": "="}


def targets(cells: dict[str, dict[str, Any]], model: str = "four-layer", rate: str = "10mbit",
            level: float = 0.95) -> dict[str, Any]:
    """The issue's target: at 10 Mbit the best decoupled method reaches 0.95 in <= 0.5x the
    time of the strongest distributed BP (the better of bp-sync and bp-pipeline). bp-local's
    time (one device, no link: the same at every rate) is given beside it where its cell ran on
    the same CPU model as the rate's cells (`panel_cells`)."""
    here = {k.split("/")[2]: c for k, c in cells.items() if k.startswith(f"{model}/{rate}/")}
    bps = {m: c for m, c in here.items() if m in BP}
    decs = {m: c for m, c in here.items() if decoupled(m) and reached(c, level) is not None}
    if not bps or not decs:
        return {"met": None, "why": f"needs a BP and a decoupled cell at {model}/{rate}"}
    best_bp = min(bps, key=lambda m: reached(bps[m], level) or math.inf)
    best_dec = min(decs, key=lambda m: reached(decs[m], level) or math.inf)
    r = ratio(decs[best_dec], bps[best_bp], level)
    local = panel_cells(cells, model, rate).get("bp-local")  # from this machine only
    return {"level": level, "rate": rate, "best_decoupled": best_dec, "strongest_bp": best_bp,
            "ratio": r, "target": TARGET_RATIO,
            "met": r["value"] is not None and r["value"] <= TARGET_RATIO,
            "bp_local_s": reached(local, level) if local else None,
            "best_decoupled_s": reached(decs[best_dec], level)}  # fmt: skip


def models_in(cells: dict[str, dict[str, Any]]) -> list[str]:
    """The models (the quick form's included) that have cells, in grid order."""
    return [m for m in [*MODELS, *QUICK] if any(k.startswith(f"{m}/") for k in cells)]


def all_targets(cells: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The target per model that has cells."""
    return {m: targets(cells, m) for m in models_in(cells)}


def panel_cells(cells: dict[str, dict[str, Any]], model: str, rate: str) -> dict[str, Any]:
    """Method -> cell of one figure panel: the rate's own cells, and bp-local (one device, no
    link: the 1 Gbit cell) beside them where it ran on the same CPU model as all of them."""
    own = {k.split("/")[2]: c for k, c in cells.items() if k.startswith(f"{model}/{rate}/")}
    local = cells.get(cell_id(model, RATES[0], "bp-local"))
    hosts = {c.get("cpu_model") for c in own.values()}
    if local and "bp-local" not in own and own and hosts == {local.get("cpu_model")}:
        own["bp-local"] = local
    return own


def figure(cells: dict[str, dict[str, Any]], out: Path) -> None:
    """Test accuracy vs training time per method, a panel per model and link rate."""
    models = models_in(cells)
    fig, axes = plt.subplots(len(models), len(RATES), figsize=(4.2 * len(RATES),
                                                              3.6 * max(1, len(models))),
                             squeeze=False, layout="constrained")  # fmt: skip
    colors = {m: plt.cm.tab10(i) for i, m in enumerate(methods())}
    for row, model in zip(axes, models, strict=False):
        for ax, rate in zip(row, RATES, strict=True):
            panel = panel_cells(cells, model, rate)
            for method, c in panel.items():
                ev = c["evaluations"]
                ax.plot([e["train_s"] for e in ev], [e["test_acc"] for e in ev], marker=".",
                        color=colors.get(method), label=method,
                        ls=":" if method == "bp-local" else "-")  # fmt: skip
            hosts = sorted({str(c.get("cpu_model") or "?").split("(")[0] for c in panel.values()})
            ax.axhline(0.95, c="k", lw=0.6, ls="--")
            ax.set_ylim(0.8, 1.0)
            ax.set_title(f"{model} @ {rate}" + (f" ({', '.join(hosts)})" if panel else
                                                ": not run"), fontsize=9)
            if panel:
                ax.set_xscale("log")
                ax.legend(fontsize=6, loc="lower right")
            ax.set_xlabel("training seconds (log)")
            ax.grid(alpha=0.3)
        row[0].set_ylabel("test accuracy")
    fig.suptitle(f"{NAME}: {DEVICES} edge devices x {CPUS} CPU / {MEMORY}; bp-local on one "
                 "device (no link), shown where it ran on the panel's CPU model", fontsize=10)
    fig.savefig(out, dpi=120, bbox_inches="tight")
    plt.close(fig)


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def main(results_root: Path | None = None) -> Path:
    prov = provenance.start(command(NAME))
    out = bench_dir(results_root) / f"{NAME}.json"
    cells: dict[str, dict[str, Any]] = dict(_load(out).get("cells", {}))
    for model, rate, method in grid(os.environ.get("TESTBED_BENCH_ONLY")):
        steps = cell_steps(cells, model, rate, method)
        cell = measure(make_spec(model, rate, method, steps), results_root)
        cells[cell_id(model, rate, method)] = {
            **cell, "command": prov["command"], "commit": prov["commit"], "dirty": prov["dirty"],
            "load": provenance.load_average(), "cpu_model": provenance.cpu_model()}
        _print(cell_id(model, rate, method), cell)
        body = {"cells": cells, "targets": all_targets(cells), "levels": LEVELS,
                "devices": DEVICES, "cpus": CPUS, "memory": MEMORY, "batch_size": BATCH,
                "lr": LR, "steps": STEPS, "cap_s": CAP_S, "root": os.geteuid() == 0}
        write_result(out, body, prov)  # after every cell: a killed chunk keeps what it made
    figure(cells, out.with_suffix(".png"))
    print(json.dumps(all_targets(cells), indent=1))
    return out


def _print(key: str, c: dict[str, Any]) -> None:
    tta = ", ".join(f"{e['level']}: " + (f"{e['train_s']:.0f} s/{e['step']}" if e["step"] else "-")
                    for e in c["time_to_accuracy"])  # fmt: skip
    print(f"{NAME} {key}: {c['mean_it_s']:.2f} it/s, final {c['final_test_accuracy']:.4f} after "
          f"{c['iterations']} steps ({c['train_time_s']:.0f} s); to {tta}", flush=True)


BENCHES.register(NAME)(main)
