"""Figure of a partition: predicted compute and link time per stage, plan beside its baselines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def partition_figure(report: dict[str, Any], out: Path) -> list[Path]:
    """One panel per plan (the partitioner's, equal units, balance by time): per stage, the
    predicted compute and link milliseconds, the bottleneck as a line; `report` is
    Partitioned.as_dict()."""
    plans = {"partitioner": report["plan"], **report["baselines"]}
    fig, axes = plt.subplots(1, len(plans), figsize=(4.2 * len(plans), 3.8), sharey=True)
    for ax, (name, plan) in zip(axes, plans.items(), strict=True):
        stages = plan["stages"]
        x = range(len(stages))
        ax.bar([i - 0.2 for i in x], [s["compute_s"] * 1e3 for s in stages], 0.4,
               label="compute", color="#6a9fd4")
        ax.bar([i + 0.2 for i in x], [s["link_s"] * 1e3 for s in stages], 0.4,
               label="link", color="#d4752f")
        ax.axhline(plan["bottleneck_s"] * 1e3, ls="--", c="k", lw=1,
                   label=f"bound {plan['bound_it_s']:.2f} it/s")
        ax.set_xticks(list(x), [f"{s['device']}\n{len(s['units'])} units" for s in stages],
                      fontsize=8)
        ax.set_title(name, fontsize=9)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("predicted ms per step")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return [out]


def bench_figure(body: dict[str, Any], out: Path) -> list[Path]:
    """`make bench NAME=partition`: measured sg it/s per split (homogeneous: against bp-local;
    hetero: the partitioner against its baselines and the neighbouring splits), predicted
    against measured stage time, and it/s around the re-split."""
    panels = [p for p in ("homogeneous", "hetero", "prediction", "resplit")
              if p in body or (p == "prediction" and ("homogeneous" in body or "hetero" in body))]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels), 3.8), squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        _PANELS[panel](ax, body)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return [out]


def _homogeneous(ax: Any, body: dict[str, Any]) -> None:
    cells = body["homogeneous"]["cells"]
    names = list(cells)
    x = range(len(names))
    ax.bar([i - 0.2 for i in x], [cells[m]["bp_local"]["it_s"] for m in names], 0.4,
           label="bp-local (1 device)", color="#9aa5b1")
    ax.bar([i + 0.2 for i in x], [cells[m]["sg"]["measured"]["it_s"] for m in names], 0.4,
           label="sg, partitioner's split (4)", color="#6a9fd4")
    ax.set_xticks(list(x), names, fontsize=8)
    ax.set_ylabel("it/s")
    ax.set_title("homogeneous: 4 x 0.4 CPU", fontsize=9)
    ax.legend(fontsize=7)


def _hetero(ax: Any, body: dict[str, Any]) -> None:
    runs = dict(body["hetero"]["runs"])
    runs.update({f"n:{k}": v for k, v in body.get("neighbours", {}).get("runs", {}).items()})
    names = list(runs)
    colors = ["#d4752f" if n == "partitioner" else "#6a9fd4" if n.startswith("n:") else "#9aa5b1"
              for n in names]
    ax.bar(range(len(names)), [runs[n]["measured"]["it_s"] for n in names], color=colors)
    ax.set_xticks(range(len(names)), [n.replace(",", "\n") for n in names], fontsize=5,
                  rotation=90)
    ax.set_title("hetero: 1.0 + 0.4 + 0.25 + 0.25 CPU, mixed links", fontsize=9)
    ax.set_ylabel("sg it/s")


def _prediction(ax: Any, body: dict[str, Any]) -> None:
    stages = [st for c in body.get("homogeneous", {}).get("cells", {}).values()
              for st in c["sg"]["stages"]]
    stages += [st for r in body.get("hetero", {}).get("runs", {}).values() for st in r["stages"]]
    pts = [(st["predicted_s"] * 1e3, st["measured_s"] * 1e3) for st in stages if st["measured_s"]]
    if pts:
        ax.scatter(*zip(*pts, strict=True), s=12, color="#2f6db3")
        top = max(max(p) for p in pts)
        ax.plot([0, top], [0, top], "k--", lw=0.8)
    ax.set_xlabel("predicted ms per step")
    ax.set_ylabel("measured ms per step (CPU / quota)")
    ax.set_title("per-stage prediction", fontsize=9)


def _resplit(ax: Any, body: dict[str, Any]) -> None:
    r = body["resplit"]
    rates = r.get("rates_since_cut") or []
    if rates:
        ax.plot([e for _, e, _ in rates], [v for _, _, v in rates], color="#6a9fd4",
                label="it/s (5 s windows)")
        ax.axvline(0, color="k", lw=0.8, label="CPU cut")
        if r.get("new_bound_it_s"):
            ax.axhline(0.8 * r["new_bound_it_s"], color="#d4752f", ls="--",
                       label="0.8 x new bound")
    ax.set_xlabel("seconds since the cut")
    ax.set_title("re-split on the schedule", fontsize=9)
    ax.legend(fontsize=7)


_PANELS = {"homogeneous": _homogeneous, "hetero": _hetero, "prediction": _prediction,
           "resplit": _resplit}
