"""Synthetic run directories (spec, metrics of every kind, events, summary) for tests, benches.

`make_run` writes one dashboard-sized run; `write_results` writes four small runs with known
numbers for the report, sweep and notebook tests.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import yaml

from testbed.metrics.run_dir import EVENTS_FILE, METRICS_FILE, SPEC_FILE, SUMMARY_FILE
from testbed.metrics.time_to_accuracy import EvalPoint, summary_block
from testbed.spec.experiment import ACCURACY_LEVELS

DEVICES: tuple[dict[str, Any], ...] = (
    {"name": "edge1", "profile": "edge", "cpus": 1.0, "memory": "1g"},
    {"name": "edge2", "profile": "edge", "cpus": 1.0, "memory": "1g"},
    {"name": "cloud", "profile": "cloud"},
)
LINKS: tuple[dict[str, Any], ...] = (  # spelled as testbed.emulation's ClusterSpec spells them
    {"pair": ["edge1", "edge2"], "rate": "100mbit", "delay": None},
    {"device": "cloud", "rate": "1gbit"},
)
SCHEDULE = ({"at_s": 30.0, "pair": ["edge1", "edge2"], "rate": "10mbit"},)


def spec_dict(experiment: str, mode: str = "inprocess", cluster: bool = False) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": experiment,
        "description": "synthetic run for dashboard tests",
        "model": {"name": "four-layer"},
        "algorithm": {"name": "sg" if mode == "sg" else "bp"},
        "training": {"batch_size": 32, "iterations": 1000, "eval_every": 100},
        "job": {"mode": mode},
        "cluster": {
            "backend": "local",
            "devices": list(DEVICES),
            "links": list(LINKS),
            "schedule": list(SCHEDULE),
        }
        if cluster
        else None,
        "scale": "smoke",
    }
    return spec


def eval_record(step: int, acc: float, wall_s: float, tags: dict[str, str]) -> dict[str, Any]:
    return {
        "kind": "eval",
        "t": time.time(),
        **tags,
        "step": step,
        "test_acc": acc,
        "wall_s": wall_s,
    }


def metric_lines(
    steps: int, eval_every: int, tags: dict[str, str], per_device: bool
) -> list[dict[str, Any]]:
    """Train records every step, eval every `eval_every`, worker/link records if `per_device`."""
    t0, out = 1.7e9, []
    for step in range(1, steps + 1):
        wall = step * 0.05
        out.append(
            {
                "kind": "train",
                "t": t0 + wall,
                **tags,
                "step": step,
                "loss": 2.3 * math.exp(-step / 400),
                "train_acc": 1 - 0.9 * math.exp(-step / 300),
                "sg_loss": 0.0,
                "it_s": 20 + 3 * math.sin(step / 50),
                "wall_s": wall,
            }
        )
        if step % eval_every == 0:
            out.append(
                {
                    "kind": "eval",
                    "t": t0 + wall,
                    **tags,
                    "step": step,
                    "test_acc": 0.98 - 0.88 * math.exp(-step / 300),
                    "wall_s": wall,
                    "train_s": wall,
                }
            )
        if per_device and step % 10 == 0:
            for i, dev in enumerate(DEVICES):
                out.append(
                    {
                        "kind": "worker",
                        "t": t0 + wall,
                        **tags,
                        "device": dev["name"],
                        "stage": str(i),
                        "step": step,
                        "it_s": 20 + i,
                        "cpu": 0.5 + 0.1 * i,
                        "memory_mb": 300 + 10 * i,
                    }
                )
            for link in LINKS:
                out.append(
                    {
                        "kind": "link",
                        "t": t0 + wall,
                        **tags,
                        "link": "-".join(link["pair"]) if "pair" in link else link["device"],
                        "step": step,
                        "bytes": 6.4e6 * step,
                        "utilisation": 0.7,
                    }
                )
    return out


def write_lines(path: Path, records: list[dict[str, Any]]) -> None:
    with open(path, "a") as f:
        f.write("".join(json.dumps(r) + "\n" for r in records))


def make_run(
    root: Path,
    experiment: str,
    run_id: str,
    steps: int = 200,
    eval_every: int = 50,
    status: str | None = "completed",
    mode: str = "inprocess",
    per_device: bool = False,
) -> Path:
    """A run directory like the controller writes; status None leaves it running (no summary)."""
    path = root / experiment / run_id
    path.mkdir(parents=True)
    tags = {"run": run_id, "experiment": experiment, "mode": mode}
    (path / SPEC_FILE).write_text(
        yaml.safe_dump(spec_dict(experiment, mode, per_device), sort_keys=False)
    )
    records = metric_lines(steps, eval_every, tags, per_device)
    write_lines(path / METRICS_FILE, records)
    write_lines(path / EVENTS_FILE, [{"event": "start", "t": time.time(), "mode": mode}])
    if status is not None:
        evals = [r for r in records if r["kind"] == "eval"]
        summary = {
            "experiment": experiment,
            "run_id": run_id,
            "scale": "smoke",
            "model": "four-layer",
            "algorithm": "bp",
            "mode": mode,
            "status": status,
            "iterations": steps,
            "final_test_accuracy": evals[-1]["test_acc"] if evals else None,
            "best_test_accuracy": max((r["test_acc"] for r in evals), default=None),
            "mean_it_s": 20.0,
            "wall_time_s": steps * 0.05,
            "started": 1.7e9,
            **_tta(evals),
        }
        if status != "completed":
            summary["reason"] = (
                "KeyboardInterrupt" if status == "interrupted" else "RuntimeError: boom"
            )
        write_lines(path / EVENTS_FILE, [{"event": "end", "t": time.time(), "status": status}])
        (path / SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
    return path


def _tta(evals: list[dict[str, Any]]) -> dict[str, Any]:
    """The evaluations and time-to-accuracy block the controller writes into summary.json."""
    points = [EvalPoint(r["step"], r["train_s"], r["test_acc"]) for r in evals]
    return summary_block(points, ACCURACY_LEVELS)


def points_for(target: int) -> tuple[int, int]:
    """(steps, eval_every) giving about `target` metric lines with per-device records on."""
    per_step = 1 + 5 / 10 + 1 / 50  # train + (3 worker + 2 link) every 10 steps + eval every 50
    return int(target / per_step), 50


# Small runs with known numbers (report, sweep and notebook tests).
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


def write_report_run(root: Path, i: int, r: dict[str, Any]) -> Path:
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
        lines.append({"kind": "eval", "t": k, "step": k * 100, "test_acc": acc, "wall_s": 10.0 * k,
                      "train_s": 10.0 * k})
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
        **_tta([x for x in lines if x["kind"] == "eval"]),
    }
    if "probe" in r:
        probe = {"configured_bps": r["probe"][0], "wire_bps": r["probe"][1]}
        summary["cluster"] = {"fidelity": {"level": "full", "probes": [probe]}}
    (path / "summary.json").write_text(json.dumps(summary))
    return path


def write_results(root: Path) -> list[Path]:
    """All fixture runs under root (a results directory); returns their paths in RUNS order."""
    return [write_report_run(root, i, r) for i, r in enumerate(RUNS)]
