"""Matplotlib figures from run directories: accuracy vs iteration and vs wall time, run overlays."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from testbed.metrics.run_dir import read_metrics, read_summary  # noqa: E402
from testbed.metrics.time_to_accuracy import from_summary  # noqa: E402


def eval_curve(run_path: Path) -> tuple[list[int], list[float], list[float]]:
    """(steps, training seconds, test accuracies) of a run's evaluations: from summary.json
    (time to accuracy's clock: startup and evaluation excluded), else while it runs from its
    eval points (their wall seconds)."""
    evals = from_summary(read_summary(run_path))
    if evals:
        return [e.step for e in evals], [e.train_s for e in evals], [e.test_acc for e in evals]
    recs = list(read_metrics(run_path, "eval"))
    return [r["step"] for r in recs], [r["wall_s"] for r in recs], [r["test_acc"] for r in recs]


def run_label(run_path: Path) -> str:
    s = read_summary(run_path)
    return f"{s.get('experiment', run_path.parent.name)} ({s.get('scale', '?')})"


def _save(fig: plt.Figure, out: Path) -> list[Path]:
    out.parent.mkdir(parents=True, exist_ok=True)
    paths = [out.with_suffix(".png"), out.with_suffix(".svg")]
    for p in paths:
        fig.savefig(p, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return paths


def accuracy_figure(runs: Sequence[Path], out: Path, title: str = "") -> list[Path]:
    """Test accuracy vs iteration (left) and vs training time (right), one line per run."""
    fig, (ax_it, ax_t) = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for run in runs:
        steps, wall, acc = eval_curve(run)
        label = run_label(run)
        ax_it.plot(steps, acc, marker="o", ms=3, label=label)
        ax_t.plot(wall, acc, marker="o", ms=3, label=label)
    ax_it.set_xlabel("iteration")
    ax_t.set_xlabel("training time (s)")
    ax_it.set_ylabel("test accuracy")
    for ax in (ax_it, ax_t):
        ax.grid(alpha=0.3)
    ax_it.legend(loc="lower right", fontsize=8)
    fig.suptitle(title or "test accuracy")
    return _save(fig, out)
