"""Where the project's folders are: the checkout root, experiments/ and results/ (env overrides)."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def experiments_dir() -> Path:
    """Where named specs live: $TESTBED_EXPERIMENTS, else the project's experiments/."""
    env = os.environ.get("TESTBED_EXPERIMENTS")
    return Path(env) if env else PROJECT_ROOT / "experiments"


def results_root() -> Path:
    """Where runs are written: $TESTBED_RESULTS, else the project's results/."""
    env = os.environ.get("TESTBED_RESULTS")
    return Path(env) if env else PROJECT_ROOT / "results"


def relative(path: str | Path) -> str:
    """`path` relative to the project root when it lies inside it, else as given (absolute)."""
    p = Path(path).resolve()
    try:
        return str(p.relative_to(PROJECT_ROOT))
    except ValueError:
        return str(path)
