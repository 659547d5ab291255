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
