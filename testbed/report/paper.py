"""The paper's figures from run directories: each function saves PNG + SVG and returns the data.

Every function takes run paths (or a results file) and an output stem, and returns a
`Figure`: the files written and the numbers plotted, so tests and the notebook can check
the plot against the runs it came from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from testbed.report import series
from testbed.report.figures import _save


@dataclass
class Figure:
    """Files written (PNG, SVG) and the data that was plotted."""

    paths: list[Path]
    data: dict[str, Any] = field(default_factory=dict)


def _finish(fig: Any, ax: Any, out: Path, title: str, data: dict[str, Any]) -> Figure:
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if not data:
        ax.text(0.5, 0.5, "no runs with this data", ha="center", va="center", transform=ax.transAxes)
    return Figure(_save(fig, out), data)


def _rate_label(bps: float) -> str:
    for unit, div in (("Gbit", 1e9), ("Mbit", 1e6), ("kbit", 1e3)):
        if bps >= div:
            return f"{bps / div:g} {unit}"
    return f"{bps:g} bit"


def table1_figure(
    out: Path, runs: Sequence[Path] = (), bench_json: Path | None = None
) -> Figure:
    """Seed Table 1: final test accuracy, BP vs SG per model (bench JSON, else runs)."""
    table = series.table1_from_bench(bench_json) if bench_json else series.table1(runs)
    models = [m for m, c in table.items() if "bp" in c or "sg" in c]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for offset, algo in ((-0.2, "bp"), (0.2, "sg")):
        xs = [i + offset for i, m in enumerate(models) if algo in table[m]]
        ax.bar(xs, [table[m][algo] for m in models if algo in table[m]], 0.4, label=algo.upper())
    ax.set_xticks(range(len(models)), models)
    ax.set_ylabel("final test accuracy")
    ax.legend(fontsize=8)
    return _finish(fig, ax, out, "Table 1: BP vs SG test accuracy", {m: table[m] for m in models})


def fig3_accuracy(runs: Sequence[Path], out: Path) -> Figure:
    """Fig. 3: test accuracy vs iteration, one line per run, BP solid and SG dashed."""
    fig, ax = plt.subplots(figsize=(7, 3.5))
    data = {}
    for run in runs:
        s = series.summary(run)
        steps, _, acc = series.eval_points(run)
        label = f"{s.get('experiment', run.parent.name)} ({s.get('algorithm', '?')})"
        ax.plot(steps, acc, ls="--" if s.get("algorithm") == "sg" else "-", marker="o", ms=3, label=label)
        data[label] = {"steps": steps, "test_acc": acc}
    ax.set_xlabel("iteration")
    ax.set_ylabel("test accuracy")
    if data:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _finish(fig, ax, out, "Fig. 3: accuracy vs iteration, BP vs SG", data)


def throughput_by_mode(runs: Sequence[Path], out: Path) -> Figure:
    """Mean training it/s per job mode (mean over completed runs of that mode)."""
    data = series.mean_by(runs, "mode")
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.bar(list(data), list(data.values()))
    ax.set_ylabel("training it/s")
    return _finish(fig, ax, out, "throughput per mode", data)


def link_rate_figure(runs: Sequence[Path], out: Path, target_acc: float = 0.9) -> Figure:
    """it/s (left) and time to `target_acc` (right) vs configured link rate, per model and mode."""
    data: dict[str, dict[str, list[Any]]] = {}
    for run in runs:
        rate = series.link_rate_bps(run)
        s = series.summary(run)
        if rate is None or s.get("status") != "completed":
            continue
        key = f"{s.get('model', '?')} {s.get('mode', '?')}"
        d = data.setdefault(key, {"rate_bps": [], "it_s": [], "tta_s": []})
        d["rate_bps"].append(rate)
        d["it_s"].append(float(s.get("mean_it_s", float("nan"))))
        tta = series.time_to_accuracy(run, target_acc)
        d["tta_s"].append(float("nan") if tta is None else tta)
    fig, (ax, ax_t) = plt.subplots(1, 2, figsize=(11, 3.8))
    for mode, d in sorted(data.items()):
        order = sorted(range(len(d["rate_bps"])), key=lambda i: d["rate_bps"][i])
        for key in d:
            d[key] = [d[key][i] for i in order]
        ax.plot(d["rate_bps"], d["it_s"], marker="o", label=mode)
        ax_t.plot(d["rate_bps"], d["tta_s"], marker="o", label=mode)
    for a, ylabel in ((ax, "training it/s"), (ax_t, f"seconds to test acc {target_acc:g}")):
        a.set_xscale("log")
        a.set_xlabel("link rate (bit/s)")
        a.set_ylabel(ylabel)
        a.grid(alpha=0.3)
    if data:
        ax.legend(fontsize=8)
    ax_t.set_title("time to accuracy per link rate")
    return _finish(fig, ax, out, "it/s per link rate", data)


def time_to_accuracy_figure(runs: Sequence[Path], out: Path) -> Figure:
    """Training seconds to each accuracy level (summary.json's time_to_accuracy), a group of
    bars per run; a level a run never reached has no bar and an 'x' at the axis."""
    data = series.tta_by_run(runs)
    levels = sorted({lv for d in data.values() for lv in d})
    fig, ax = plt.subplots(figsize=(max(7.0, 1.2 * len(data) + 2), 3.8))
    width = 0.8 / max(1, len(levels))
    for k, level in enumerate(levels):
        xs = [i + (k - (len(levels) - 1) / 2) * width for i in range(len(data))]
        ts = [d.get(level, (None, None))[1] for d in data.values()]
        ax.bar([x for x, t in zip(xs, ts, strict=True) if t is not None],
               [t for t in ts if t is not None], width, label=f"to {level:g}")
        missed = [x for x, t in zip(xs, ts, strict=True) if t is None]
        ax.scatter(missed, [0] * len(missed), marker="x", c="k", zorder=3)
    ax.set_xticks(range(len(data)), [k.split("/")[0] for k in data], rotation=20, ha="right",
                  fontsize=8)
    ax.set_ylabel("training seconds (x: not reached)")
    if data:
        ax.legend(fontsize=8)
    return _finish(fig, ax, out, "time to accuracy", {k: {str(lv): v for lv, v in d.items()}
                                                      for k, d in data.items()})


def link_fidelity_figure(runs: Sequence[Path], out: Path) -> Figure:
    """Achieved (on the wire) vs configured link rate from the runs' fidelity probes."""
    probes = [p for run in runs for p in series.fidelity_probes(run)]
    data = {"configured_bps": [float(p["configured_bps"]) for p in probes],
            "achieved_bps": [float(p["wire_bps"]) for p in probes]} if probes else {}
    fig, ax = plt.subplots(figsize=(5, 4.5))
    if probes:
        ax.scatter(data["configured_bps"], data["achieved_bps"], label="probe")
        lo, hi = min(data["configured_bps"]) / 2, max(data["configured_bps"]) * 2
        ax.plot([lo, hi], [lo, hi], c="k", lw=0.8, ls=":", label="achieved = configured")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.legend(fontsize=8)
    ax.set_xlabel("configured rate (bit/s)")
    ax.set_ylabel("achieved rate on the wire (bit/s)")
    return _finish(fig, ax, out, "link fidelity", data)


def utilisation_figure(run: Path, out: Path) -> Figure:
    """Per-device (worker) compute utilisation over the run, from its `worker` points."""
    util = series.utilisation(run)
    data = {w: {"t_s": ts, "busy": us} for w, (ts, us) in util.items() if ts}
    fig, ax = plt.subplots(figsize=(8, 3.5))
    for w, d in data.items():
        ax.plot(d["t_s"], d["busy"], label=w)
    ax.set_xlabel("seconds since run start")
    ax.set_ylabel("busy fraction (compute / wall)")
    ax.set_ylim(0, 1.05)
    if data:
        ax.legend(fontsize=8)
    return _finish(fig, ax, out, f"utilisation per device: {run.name}", data)


def all_figures(runs: Sequence[Path], out_dir: Path, bench_json: Path | None = None,
                target_acc: float = 0.9) -> dict[str, Figure]:
    """Every comparison figure over these runs into out_dir (utilisation: one per distributed run);
    time to accuracy is to `target_acc` (a sweep passes its own target)."""
    figs = {
        "table1": table1_figure(out_dir / "table1", runs, bench_json),
        "fig3": fig3_accuracy(runs, out_dir / "fig3-accuracy"),
        "throughput": throughput_by_mode(runs, out_dir / "throughput-by-mode"),
        "link_rate": link_rate_figure(runs, out_dir / "link-rate", target_acc),
        "time_to_accuracy": time_to_accuracy_figure(runs, out_dir / "time-to-accuracy"),
        "fidelity": link_fidelity_figure(runs, out_dir / "link-fidelity"),
    }
    for run in runs:
        if series.utilisation(run):
            figs[f"utilisation/{run.name}"] = utilisation_figure(run, out_dir / f"utilisation-{run.name}")
    return figs
