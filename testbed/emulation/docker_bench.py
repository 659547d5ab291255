"""Benchmark: achieved vs configured rate at 10 Mbit, 100 Mbit and 1 Gbit on the docker backend.

The docker counterpart of `bench_links` (same probe, same summary), for when an engine and
the worker image are present: ``python -m testbed.emulation.docker_bench
results/bench/links-docker.json [--source]`` (``--source``: bind the working tree's package
over the image's copy). Upload is shaped on a's eth0, download on a's ifb (`docker_tc`).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from .bench_links import RATES, TARGET, host_info, summarize
from .config import ClusterSpec
from .docker_backend import DockerBackend
from .probe import probe_link


def bench_rate(rate: str, repeats: int, seconds: float, mount_source: bool) -> dict[str, Any]:
    """Shape device a's link to `rate` and probe a->b (upload) and b->a (download, via ifb)."""
    cluster = ClusterSpec.model_validate(
        {
            "backend": "docker",
            "devices": [{"name": "a", "profile": "cloud"}, {"name": "b", "profile": "cloud"}],
            "links": [{"device": "a", "rate": rate}],
        }
    )
    run_id = f"bench-docker-{os.getpid()}-{rate}"
    with DockerBackend(run_id, mount_source=mount_source).up(cluster) as handle:
        runs = [
            probe_link(handle, src, dst, seconds=seconds)
            for _ in range(repeats)
            for src, dst in (("a", "b"), ("b", "a"))
        ]
    return {**summarize(rate, runs), "directions": ["a->b (eth0)", "b->a (ifb)"] * repeats}


def main(
    out_json: str | Path, repeats: int = 3, seconds: float = 1.5, mount_source: bool = False
) -> dict[str, Any]:
    """Measure every rate, write the JSON, return the report."""
    out = Path(out_json)
    out.parent.mkdir(parents=True, exist_ok=True)
    results = [bench_rate(rate, repeats, seconds, mount_source) for rate in RATES]
    report = {"backend": "docker", "host": host_info(), "target": TARGET, "results": results}
    out.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--source"]
    if len(args) != 1:
        sys.exit("usage: python -m testbed.emulation.docker_bench OUT.json [--source]")
    for row in main(args[0], mount_source="--source" in sys.argv)["results"]:
        up = [r["ratio"] for r in row["runs"][0::2]]
        down = [r["ratio"] for r in row["runs"][1::2]]
        print(
            f"{row['rate']:>8}: median {row['median_ratio']:.3f} "
            f"(upload {min(up):.3f}-{max(up):.3f}, download {min(down):.3f}-{max(down):.3f})"
        )
