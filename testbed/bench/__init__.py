"""Benchmarks: commands that write results/bench/<name>.json and a figure (never timed tests)."""

from collections.abc import Callable
from pathlib import Path

from testbed.registry import Registry

BENCHES: Registry[Callable[[Path], Path]] = Registry("benchmark")


def bench_dir(results_root: Path | None = None) -> Path:
    from testbed.metrics.run_dir import default_results_root

    out = (results_root or default_results_root()) / "bench"
    out.mkdir(parents=True, exist_ok=True)
    return out
