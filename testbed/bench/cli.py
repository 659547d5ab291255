"""Benchmark `cli`: wall time of the commands a user types first, each in a fresh interpreter.

`testbed --help` took ~9 s when the spec module imported TensorFlow; the target is under 1 s.
Each command runs REPEATS times (median and max reported) beside `import tensorflow` alone, the
cost the CLI avoids; ratios within one run, the host load recorded.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPEATS = 7
TARGET_S = 1.0
COMMANDS = {
    "testbed --help": ["--help"],
    "testbed list": ["list"],
    "testbed validate quickstart": ["validate", "quickstart"],
    "testbed run four-layer-sg --dry-run": ["run", "four-layer-sg", "--dry-run"],
}


def _timed(argv: list[str]) -> float:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, env=env, timeout=300)
    return time.perf_counter() - t0


def measure() -> dict[str, dict[str, float]]:
    """Median and max seconds per command (interleaved rounds, so load drifts hit all alike)."""
    argvs = {k: [sys.executable, "-m", "testbed", *v] for k, v in COMMANDS.items()}
    argvs["python -c 'import tensorflow' (reference)"] = [sys.executable, "-c", "import tensorflow"]
    times: dict[str, list[float]] = {k: [] for k in argvs}
    for _ in range(REPEATS):
        for name, argv in argvs.items():
            times[name].append(_timed(argv))
    return {k: {"median_s": statistics.median(v), "max_s": max(v), "runs_s": v} for k, v in times.items()}


def figure(rows: dict[str, dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(rows)
    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.barh(names, [rows[n]["median_s"] for n in names], color="tab:blue")
    ax.axvline(TARGET_S, color="tab:red", linestyle="--", label=f"target {TARGET_S:.0f} s")
    ax.set_xlabel(f"wall seconds, median of {REPEATS} (fresh interpreter)")
    ax.invert_yaxis()
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(results_root: Path | None = None) -> Path:
    from importlib.metadata import version

    from testbed.bench import bench_dir, command, write_result
    from testbed.metrics import provenance

    made_by = provenance.start(command("cli"))
    rows = measure()
    help_s = rows["testbed --help"]["median_s"]
    body: dict[str, Any] = {
        "repeats": REPEATS, "rows": rows, "target_s": TARGET_S, "help_met": help_s < TARGET_S,
        "versions": {"typer": version("typer")},  # the rest are in the provenance block
    }
    out = bench_dir(results_root)
    figure(rows, out / "cli.png")
    write_result(out / "cli.json", body, made_by)
    for name, r in rows.items():
        print(f"{name:45} median {r['median_s']:.2f} s  max {r['max_s']:.2f} s")
    return out / "cli.json"
