"""Benchmark: achieved vs configured rate at 10 Mbit, 100 Mbit and 1 Gbit on the local backend.

Run as root: ``python -m testbed.bench.links results/bench/links.json``.
Writes the JSON and a bar figure (``links.png``) next to it.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from testbed.emulation.config import ClusterSpec
from testbed.emulation.fidelity import ProbeResult
from testbed.emulation.local.backend import LocalBackend
from testbed.emulation.probe import probe_link
from testbed.emulation.shaping import burst_bytes

RATES = ("10mbit", "100mbit", "1gbit")
TARGET = 0.03


def bench_rate(rate: str, repeats: int, seconds: float) -> dict[str, Any]:
    """Shape device a's link to `rate` and probe a->b (upload) and b->a (download)."""
    cluster = ClusterSpec.model_validate(
        {
            "devices": [{"name": "a", "profile": "cloud"}, {"name": "b", "profile": "cloud"}],
            "links": [{"device": "a", "rate": rate}],
        }
    )
    run_id = f"bench-{os.getpid()}-{rate}"
    with LocalBackend(run_id).up(cluster) as handle:
        runs = [
            probe_link(handle, src, dst, seconds=seconds)
            for _ in range(repeats)
            for src, dst in (("a", "b"), ("b", "a"))
        ]
    return summarize(rate, runs)


def summarize(rate: str, runs: list[ProbeResult]) -> dict[str, Any]:
    ratios = [r.ratio for r in runs]
    median = statistics.median(ratios)
    return {
        "rate": rate,
        "configured_bps": runs[0].configured_bps,
        "burst_bytes": burst_bytes(runs[0].configured_bps),
        "median_ratio": median,
        "min_ratio": min(ratios),
        "max_ratio": max(ratios),
        "median_goodput_bps": statistics.median(r.goodput_bps for r in runs),
        "within_target": abs(median - 1) <= TARGET,
        "runs": [r.to_dict() for r in runs],
    }


def host_info() -> dict[str, Any]:
    return {
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "loadavg_1m": os.getloadavg()[0],
        "python": platform.python_version(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    x = range(len(results))
    medians = [r["median_ratio"] for r in results]
    errors = [
        [m - r["min_ratio"] for m, r in zip(medians, results, strict=True)],
        [r["max_ratio"] - m for m, r in zip(medians, results, strict=True)],
    ]
    goodput = [r["median_goodput_bps"] / r["configured_bps"] for r in results]
    ax.bar([i - 0.2 for i in x], medians, 0.4, yerr=errors, capsize=4, color="#4c72b0",
           label="wire rate (what tc limits)")  # fmt: skip
    ax.bar([i + 0.2 for i in x], goodput, 0.4, color="#c4c4c4", label="TCP goodput")
    ax.set_xticks(list(x), [r["rate"] for r in results])
    ax.axhspan(1 - TARGET, 1 + TARGET, color="#55a868", alpha=0.2, label=f"±{TARGET:.0%} target")
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_ylim(min(0.85, min(medians + goodput) - 0.05), 1.1)
    ax.set_ylabel("achieved / configured")
    ax.set_title("Local backend link fidelity (HTB on veth)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(out_json: str | Path, repeats: int = 3, seconds: float = 1.5) -> dict[str, Any]:
    """Measure every rate, write the JSON and a PNG next to it, return the report."""
    from testbed.bench import command, write_result
    from testbed.metrics import provenance

    out = Path(out_json)
    made_by = provenance.start(command("links"))
    results = [bench_rate(rate, repeats, seconds) for rate in RATES]
    report = {"host": host_info(), "target": TARGET, "results": results}
    write_result(out, report, made_by)
    plot(results, out.with_suffix(".png"))
    return report


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m testbed.bench.links OUT.json")
    for row in main(sys.argv[1])["results"]:
        print(
            f"{row['rate']:>8}: median {row['median_ratio']:.3f} "
            f"(min {row['min_ratio']:.3f}, max {row['max_ratio']:.3f})"
        )
