"""The cluster plan as a figure: each configuration's predicted time, power, energy and EDP,
the pick marked (and measured values beside, where a run measured them)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

PANELS = (("time_s", "time (s)"), ("power_w", "mean power (W)"), ("energy_j", "energy (J)"),
          ("edp_js", "EDP (J s)"))  # fmt: skip


def plan_figure(
    rows: Sequence[Mapping[str, Any]],
    out: Path,
    title: str,
    measured: Mapping[str, Mapping[str, float]] | None = None,
) -> list[Path]:
    """Four bar panels over the feasible configurations in rank order; the pick in a darker
    colour; `measured` (config -> metrics) adds a dot per configuration that was run."""
    feasible = [r for r in rows if r.get("rank")]
    labels = [str(r["config"]) for r in feasible]
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.8))
    for ax, (key, name) in zip(axes, PANELS, strict=True):
        values = [float(r[key]) for r in feasible]
        colours = ["#1f4e79" if i == 0 else "#8fb3d9" for i in range(len(values))]
        ax.bar(range(len(values)), values, color=colours, label="predicted")
        if measured:
            xs = [i for i, label in enumerate(labels) if label in measured]
            ax.plot(xs, [measured[labels[i]][key] for i in xs], "o", color="#c0392b",
                    label="measured")  # fmt: skip
        ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=8)
        ax.set_title(name, fontsize=10)
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=11)
    out.parent.mkdir(parents=True, exist_ok=True)
    paths = [out.with_suffix(".png"), out.with_suffix(".svg")]
    for p in paths:
        fig.savefig(p, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return paths
