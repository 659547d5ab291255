"""Continue an interrupted, failed or crashed run in its own directory (`testbed run --resume`).

A run is resumed from the latest checkpoint its directory holds (in process: `checkpoints/`;
distributed: the parameter server's `workers/checkpoints/`), or from step 0 when it has none.
A completed run is left as it is; a run whose controller still lives is refused.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from testbed.metrics.run_dir import EVENTS_FILE, SPEC_FILE, SUMMARY_FILE
from testbed.modes import get_mode
from testbed.processes import started_before
from testbed.runtime.workdir import CHECKPOINTS, workers_dir
from testbed.spec.experiment import Spec
from testbed.spec.load import load_resolved
from testbed.training import checkpoint
from testbed.training.resume import CHECKPOINTS_DIR


class ResumeError(Exception):
    """A run directory that cannot be resumed; the message names it and why."""


class AlreadyComplete(Exception):
    """The run completed its budget: there is nothing to resume."""


def checkpoint_dir(run_path: Path, spec: Spec) -> Path:
    """Where the run's checkpoints are: its own folder in process, the workers' otherwise."""
    if get_mode(spec.job.mode).distributed:
        return workers_dir(run_path) / CHECKPOINTS
    return run_path / CHECKPOINTS_DIR


def resume_plan(run_path: Path) -> tuple[Spec, dict[str, Any]]:
    """The run's spec and `run_experiment`'s resume argument; raises if it cannot resume."""
    if not (run_path / SPEC_FILE).is_file():
        raise ResumeError(f"{run_path}: not a run directory (no {SPEC_FILE}); expected "
                          "results/<experiment>/<run-id>")  # fmt: skip
    spec = load_resolved(run_path / SPEC_FILE)
    summary_path = run_path / SUMMARY_FILE
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    if summary.get("status") == "completed":
        raise AlreadyComplete(f"{run_path}: already completed ({summary.get('iterations')} "
                              "iterations); nothing to resume")  # fmt: skip
    if spec.algorithm.name == "kt":
        raise ResumeError(f"{run_path}: knowledge-transfer runs cannot be resumed; start a new run")
    owner = _live_owner(run_path)
    if owner is not None and not summary:
        raise ResumeError(f"{run_path}: its controller (pid {owner}) is still running")
    steps = checkpoint.steps(checkpoint_dir(run_path, spec))
    return spec, {"path": run_path, "summary": summary, "from_step": steps[-1] if steps else 0}


def _live_owner(run_path: Path) -> int | None:
    """The pid of the run's last controller if it still runs on this host, else None."""
    events = run_path / EVENTS_FILE
    if not events.is_file():
        return None
    owner = None
    for line in events.read_text().splitlines():
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if e.get("event") in ("start", "resume"):
            owner = e
    if owner is None or owner.get("host") != socket.gethostname():
        return None
    pid = int(owner.get("pid", 0))
    return pid if pid > 0 and started_before(pid, float(owner.get("t", 0))) else None
