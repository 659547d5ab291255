"""Small synthetic run directories for report, sweep and notebook tests (known numbers)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

RUNS: list[dict[str, Any]] = [
    {"experiment": "four-layer-bp", "model": "four-layer", "algorithm": "bp", "mode": "inprocess",
     "acc": [0.80, 0.95], "it_s": 30.0},
    {"experiment": "four-layer-sg", "model": "four-layer", "algorithm": "sg", "mode": "inprocess",
     "acc": [0.70, 0.92], "it_s": 40.0},
    {"experiment": "sweep-sg-1g", "model": "four-layer", "algorithm": "sg", "mode": "sg",
     "acc": [0.60, 0.91], "it_s": 20.0, "rate": "1gbit", "probe": [1e9, 0.97e9]},
    {"experiment": "sweep-sg-10m", "model": "four-layer", "algorithm": "sg", "mode": "sg",
     "acc": [0.50, 0.85], "it_s": 5.0, "rate": "10mbit", "probe": [1e7, 0.99e7]},
]


def write_run(root: Path, i: int, r: dict[str, Any]) -> Path:
    """One completed run: spec.yaml, metrics.jsonl (train, eval, worker), summary.json."""
    run_id = f"20260101-00000{i}-smoke-000{i}"
    path = root / r["experiment"] / run_id
    path.mkdir(parents=True)
    spec: dict[str, Any] = {"name": r["experiment"], "job": {"mode": r["mode"]}}
    if "rate" in r:
        spec["cluster"] = {"links": [{"device": "edge0", "rate": r["rate"]}]}
    (path / "spec.yaml").write_text(yaml.safe_dump(spec))
    lines = []
    for k, acc in enumerate(r["acc"], start=1):
        lines.append({"kind": "train", "t": k, "step": k * 100, "loss": 1.0 / k, "it_s": r["it_s"]})
        lines.append({"kind": "eval", "t": k, "step": k * 100, "test_acc": acc, "wall_s": 10.0 * k})
    if r["mode"] != "inprocess":
        for w, busy in (("stage0", 0.5), ("stage1", 0.25)):
            for k in range(4):
                lines.append({"kind": "worker", "t": k, "worker": w, "wall_s": 2.0 * k,
                              "compute_s": 2.0 * k * busy, "step": k})
    (path / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    summary: dict[str, Any] = {
        "experiment": r["experiment"], "run_id": run_id, "scale": "smoke", "model": r["model"],
        "algorithm": r["algorithm"], "mode": r["mode"], "status": "completed",
        "final_test_accuracy": r["acc"][-1], "best_test_accuracy": max(r["acc"]),
        "mean_it_s": r["it_s"], "iterations": 200, "wall_time_s": 25.0,
    }
    if "probe" in r:
        probe = {"configured_bps": r["probe"][0], "wire_bps": r["probe"][1]}
        summary["cluster"] = {"fidelity": {"level": "full", "probes": [probe]}}
    (path / "summary.json").write_text(json.dumps(summary))
    return path


def write_results(root: Path) -> list[Path]:
    """All fixture runs under root (a results directory); returns their paths in RUNS order."""
    return [write_run(root, i, r) for i, r in enumerate(RUNS)]
