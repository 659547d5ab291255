"""Benchmark `edge-pipeline`: it/s per mode on four emulated 0.4-CPU edge devices, vs the bounds.

Every run is a real distributed run inside local-backend devices (netns + cgroup + tc, see
`testbed.controller.cluster_run`): 0.4 CPU and 1 GB each, access links at 1 Gbit, then
100 and 10 Mbit where the activations make the link the bound. Needs root (without it the
runs degrade to loopback processes and the JSON says so in `fidelity_level`).
"""

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
from testbed.bench.pipeline import SG, run_one  # noqa: E402
from testbed.metrics.run_dir import read_summary  # noqa: E402
from testbed.planner.balance import bounds  # noqa: E402
from testbed.spec.experiment import Spec, parse_spec  # noqa: E402

CPUS, MEMORY, DEVICES = 0.4, "1g", 4
BATCH, STEPS = 64, 100  # optimizer steps per stage, every mode at 1 Gbit
SLOW_STEPS = 60  # sg at 100 / 10 Mbit (one 10 Mbit step takes ~1.3 s)
MODES = ("bp-local", "bp-sync", "bp-pipeline", "sg")
SLOW_RATES = ("100mbit", "10mbit")
TARGETS = {"sg_vs_bound": 0.85, "sg_vs_bp_local": 3.0, "sg_vs_bp_pipeline": 1.3, "link_bound": 0.9}


def cluster(devices: int, rate: str | None) -> dict[str, Any]:
    """`devices` edge devices at 0.4 CPU / 1 GB; each access link at `rate` (none: unshaped)."""
    names = [f"edge{i}" for i in range(devices)]
    return {
        "backend": "local",
        "devices": [{"name": n, "profile": "edge", "cpus": CPUS, "memory": MEMORY} for n in names],
        "links": [{"device": n, "rate": rate} for n in names] if rate and devices > 1 else [],
    }


def make_spec(
    model: str, mode: str, split: list[str] | None, rate: str, steps: int = STEPS
) -> Spec:
    """The run's spec: smoke-scale settings, 1 thread, the cluster, stage i on edge<i>."""
    devices = 1 if mode == "bp-local" else DEVICES
    raw = {
        "name": f"edge-pipeline-{model}-{mode}-{rate}",
        "model": {"name": model, "split_after": split},
        "algorithm": {"name": "sg" if mode == "sg" else "bp", "sg": SG},
        "training": {"batch_size": BATCH, "lr": 1.0e-3, "iterations": steps,
                     "eval_every": steps, "log_every": 10, "eval_samples": 1000, "threads": 1},
        "job": {"mode": mode, "micro_batches": 4, "startup_timeout_s": 300},
        "cluster": cluster(devices, rate),
    }  # fmt: skip
    return parse_spec(raw, f"bench edge-pipeline {model} {mode} {rate}")


def measure(spec: Spec, root: Path | None) -> dict[str, Any]:
    """One emulated run: it/s, fidelity, per-worker step times, bytes per link step."""
    row = run_one(spec, root)
    s = read_summary(Path(row["run"]))
    row.update(
        fidelity_level=s.get("fidelity_level"),
        probes=[
            {k: p[k] for k in ("src", "dst", "configured_bps", "wire_bps", "ratio")}
            for p in s.get("cluster", {}).get("fidelity", {}).get("probes", [])
        ],
        link_bound_it_s=s.get("link_bound_it_s"),
        links=s.get("links", []),
        resource_events=s.get("cluster", {}).get("resource_events"),
    )
    return row


def step_bounds(sg_row: dict[str, Any]) -> dict[str, float]:
    """sum/max of the per-step compute each sg worker measured inside its device."""
    times = [w["compute_per_step_s"] for w in sg_row["per_worker"].values()
             if w.get("compute_per_step_s")]  # fmt: skip
    return bounds(times) if times else {}


def balanced(model: str) -> tuple[list[str], dict[str, Any]]:
    """Split into 4 stages balanced by sg step times profiled inside one such edge device
    (0.4 CPU, 1 GB, 1 thread; `controller.device_profile`), as a worker there would step them."""
    from testbed.planner.device_profile import profile_on_device
    from testbed.planner.split_profile import UnitProfile, balanced_split

    measured = profile_on_device(make_spec(model, "sg", None, "1gbit"), "edge0")
    units = UnitProfile(tuple(measured["units"]), tuple(measured["unit_s"]),
                        tuple(measured["sg_s"]))
    split, best = balanced_split(units, DEVICES)
    return split, {"units": units.units, "unit_s_on_device": list(units.unit_s),
                   "sg_s_on_device": list(units.sg_s), "stage_s_on_device": best.stage_times,
                   "profiled_on": measured["device"],
                   "fidelity_level": measured["fidelity_level"]}  # fmt: skip


def cell(
    model: str, split: list[str] | None, modes: tuple[str, ...], root: Path | None
) -> dict[str, Any]:
    """Every mode at 1 Gbit for one split, with the bounds and ratios."""
    measured = {m: measure(make_spec(model, m, split, "1gbit"), root) for m in modes}
    _print(model, "1gbit", measured)
    out: dict[str, Any] = {"model": model, "split_after": split, "rate": "1gbit",
                           "measured": measured}  # fmt: skip
    if "sg" in measured:
        b = step_bounds(measured["sg"])
        sg = measured["sg"]["it_s"]
        out["bound"] = b
        out["ratios"] = {
            "sg_vs_bound": sg / b["pipeline_it_s"] if b else None,
            **{f"sg_vs_{m.replace('-', '_')}": sg / measured[m]["it_s"]
               for m in modes if m != "sg" and measured[m]["it_s"]},
        }  # fmt: skip
    return out


def slow_links(model: str, split: list[str] | None, root: Path | None) -> list[dict[str, Any]]:
    """sg at 100 and 10 Mbit: it/s against rate / bytes per step of the busiest link."""
    rows = []
    for rate in SLOW_RATES:
        r = measure(make_spec(model, "sg", split, rate, SLOW_STEPS), root)
        _print(model, rate, {"sg": r})
        bound = r["link_bound_it_s"]
        rows.append({"model": model, "rate": rate, "sg": r, "link_bound_it_s": bound,
                     "sg_vs_link_bound": r["it_s"] / bound if bound else None})  # fmt: skip
    return rows


def figure(cells: list[dict[str, Any]], slow: list[dict[str, Any]], out: Path) -> None:
    """it/s per mode at 1 Gbit (sum/max bound drawn), and sg it/s per rate vs the link bound."""
    fig, axes = plt.subplots(1, len(cells) + 1, figsize=(3.6 * (len(cells) + 1), 4))
    for ax, c in zip(axes, cells):
        modes = list(c["measured"])
        ax.bar(range(len(modes)), [c["measured"][m]["it_s"] for m in modes], color="#6a9fd4")
        if c.get("bound"):
            ax.axhline(c["bound"]["pipeline_it_s"], ls="--", c="#d4752f", label="1/max t (devices)")
            ax.axhline(c["bound"]["sequential_it_s"], ls=":", c="#2f6db3", label="1/sum t")
        ax.set_xticks(range(len(modes)), modes, rotation=30, fontsize=8)
        ax.set_title(f"{c['model']} @1gbit", fontsize=9)
        ax.legend(fontsize=7)
    ax = axes[-1]
    rates = [s["rate"] for s in slow]
    ax.bar(range(len(rates)), [s["sg"]["it_s"] for s in slow], color="#d4752f", label="sg it/s")
    ax.plot(range(len(rates)), [s["link_bound_it_s"] or 0 for s in slow], "k_", ms=30,
            mew=2, label="rate / bytes per step")  # fmt: skip
    ax.set_xticks(range(len(rates)), [f"{s['model']}\n{s['rate']}" for s in slow], fontsize=8)
    ax.set_title("sg on slow links", fontsize=9)
    ax.legend(fontsize=7)
    axes[0].set_ylabel("it/s (optimizer steps per stage)")
    fig.suptitle(f"edge-pipeline: {DEVICES} devices x {CPUS} CPU / {MEMORY}, local backend",
                 fontsize=10, y=1.02)  # fmt: skip
    fig.savefig(out, dpi=120, bbox_inches="tight")
    plt.close(fig)


def _print(model: str, rate: str, measured: dict[str, dict[str, Any]]) -> None:
    its = "  ".join(f"{m} {r['it_s']:.2f}" for m, r in measured.items())
    print(f"edge-pipeline {model} @{rate}: {its} it/s", flush=True)


def main(results_root: Path | None = None) -> Path:
    started, load = time.time(), os.getloadavg()
    split, profile = balanced("eight-layer")
    cells = [
        {**cell("eight-layer", split, MODES, results_root), "balance": profile},
        cell("four-layer", None, ("bp-pipeline", "sg"), results_root),  # the seed's split
    ]
    slow = slow_links("four-layer", None, results_root)
    out = bench_dir(results_root)
    body = {
        "cells": cells, "slow_links": slow, "targets": TARGETS,
        "devices": DEVICES, "cpus": CPUS, "memory": MEMORY, "batch_size": BATCH, "steps": STEPS,
        "slow_link_steps": SLOW_STEPS,
        "command": "make bench NAME=edge-pipeline", "root": os.geteuid() == 0,
        "wall_s": time.time() - started, "loadavg_start": load, "loadavg_end": os.getloadavg(),
    }  # fmt: skip
    (out / "edge-pipeline.json").write_text(json.dumps(body, indent=2, default=str) + "\n")
    figure(cells, slow, out / "edge-pipeline.png")
    return out / "edge-pipeline.json"


BENCHES.register("edge-pipeline")(main)
