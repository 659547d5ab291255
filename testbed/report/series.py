"""Numbers the report figures plot, read from run directories (pure reads, no plotting)."""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

from testbed.emulation.units import parse_rate
from testbed.metrics.run_dir import read_metrics, read_summary
from testbed.metrics.time_to_accuracy import reached


def summary(run: Path) -> dict[str, Any]:
    return read_summary(run)


def spec_of(run: Path) -> dict[str, Any]:
    """The resolved spec the run recorded ({} when missing)."""
    path = run / "spec.yaml"
    return dict(yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}


def eval_points(run: Path) -> tuple[list[int], list[float], list[float]]:
    """(steps, wall seconds, test accuracies) of the run's eval points."""
    recs = list(read_metrics(run, "eval"))
    return [int(r["step"]) for r in recs], [float(r["wall_s"]) for r in recs], [
        float(r["test_acc"]) for r in recs
    ]


def time_to_accuracy(run: Path, target: float) -> float | None:
    """Training seconds until the run first reached `target` (None: never reached); the one
    definition of `testbed.metrics.time_to_accuracy`, read from summary.json."""
    return reached(summary(run), target).train_s


def tta_by_run(runs: Iterable[Path]) -> dict[str, dict[float, tuple[int | None, float | None]]]:
    """{experiment/run: {level: (steps, training seconds)}} of completed runs, from the
    time_to_accuracy block of their summaries; (None, None) for a level not reached."""
    out = {}
    for run in runs:
        s = summary(run)
        if s.get("status") != "completed" or not s.get("time_to_accuracy"):
            continue
        out[f"{run.parent.name}/{run.name}"] = {
            float(e["level"]): (e["step"], e["train_s"]) for e in s["time_to_accuracy"]
        }
    return out


def link_rate_bps(run: Path) -> int | None:
    """The slowest configured link rate of the run's cluster (None: unshaped or no cluster)."""
    cluster = spec_of(run).get("cluster") or {}
    rates = [parse_rate(str(link["rate"])) for link in cluster.get("links") or [] if link.get("rate")]
    return min(rates) if rates else None


def table1(runs: Iterable[Path]) -> dict[str, dict[str, float]]:
    """{model: {algorithm: final test accuracy}} of the latest completed run per pair."""
    out: dict[str, dict[str, float]] = defaultdict(dict)
    for run in sorted(runs, key=lambda p: p.name):
        s = summary(run)
        if s.get("status") == "completed" and "final_test_accuracy" in s:
            out[str(s["model"])][str(s["algorithm"])] = float(s["final_test_accuracy"])
    return dict(out)


def table1_from_bench(path: Path) -> dict[str, dict[str, float]]:
    """The same table from results/bench/accuracy.json (`make bench NAME=accuracy`)."""
    rows = json.loads(path.read_text())["rows"]
    return {r["model"]: {"bp": float(r["bp"]), "sg": float(r["sg"])} for r in rows}


def mean_by(runs: Sequence[Path], key: str, value: str = "mean_it_s") -> dict[str, float]:
    """Mean of summary[value] over completed runs grouped by summary[key]."""
    groups: dict[str, list[float]] = defaultdict(list)
    for run in runs:
        s = summary(run)
        if s.get("status") == "completed" and value in s:
            groups[str(s.get(key))].append(float(s[value]))
    return {k: sum(v) / len(v) for k, v in sorted(groups.items())}


def fidelity_probes(run: Path) -> list[dict[str, Any]]:
    """Link probes recorded in summary.json (cluster.fidelity.probes or fidelity.probes)."""
    s = summary(run)
    for holder in (s.get("cluster") or {}, s):
        fid = holder.get("fidelity")
        if isinstance(fid, dict) and fid.get("probes"):
            return list(fid["probes"])
    return []


def utilisation(run: Path) -> dict[str, tuple[list[float], list[float]]]:
    """{worker: (seconds since its first report, busy fraction)} from `worker` points.

    Busy fraction between two reports = delta compute_s / delta wall_s (0..1).
    """
    by_worker: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for rec in read_metrics(run, "worker"):
        if "compute_s" in rec and "wall_s" in rec:
            by_worker[str(rec.get("worker", "?"))].append((float(rec["wall_s"]), float(rec["compute_s"])))
    out = {}
    for name, pts in sorted(by_worker.items()):
        ts, us = [], []
        for (w0, c0), (w1, c1) in itertools.pairwise(pts):
            if w1 > w0:
                ts.append(w1)
                us.append(min(1.0, max(0.0, (c1 - c0) / (w1 - w0))))
        out[name] = (ts, us)
    return out


def latest_per_experiment(runs: Iterable[Path]) -> list[Path]:
    """The newest run of each experiment (run ids sort by time), in experiment order."""
    latest: dict[str, Path] = {}
    for run in sorted(runs, key=lambda p: p.name):
        latest[run.parent.name] = run
    return [latest[k] for k in sorted(latest)]
