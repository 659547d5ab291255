"""Run one experiment from its spec into a run directory, whatever happens (done, failed, Ctrl-C)."""

from __future__ import annotations

import os
import socket
import time
import traceback
from pathlib import Path
from typing import Any

from testbed.data import get_spec
from testbed.metrics import provenance
from testbed.metrics.run_dir import RunDir
from testbed.metrics.time_to_accuracy import from_summary, summary_block
from testbed.modes import get_mode, load
from testbed.report.figures import accuracy_figure
from testbed.spec.experiment import Spec
from testbed.spec.load import spec_to_dict


def run_experiment(
    spec: Spec,
    results_root: Path | None = None,
    progress: bool = True,
    resume: dict[str, Any] | None = None,
) -> RunDir:
    """Create the run directory, train, and always write summary.json with the final status.

    `resume` continues an earlier run instead (`controller.resume.resume_plan`): {"path": its
    run directory, "summary": its summary so far ({} when it has none), "from_step": its latest
    checkpoint's step}. The runner picks up from that checkpoint; the summary adds this
    resumption to the earlier ones and this part's wall time to theirs.
    """
    run = RunDir(Path(resume["path"])) if resume else RunDir.create(spec.name, spec.scale, results_root)
    previous: dict[str, Any] = dict(resume["summary"]) if resume else {}
    if not resume:
        run.write_spec(spec_to_dict(spec))
    run.event("resume" if resume else "start", mode=spec.job.mode, pid=os.getpid(),
              host=socket.gethostname())  # fmt: skip
    started, made_by = time.time(), provenance.start()
    synthetic = get_spec(spec.data.dataset).synthetic
    base: dict[str, Any] = {
        "experiment": spec.name, "run_id": run.run_id, "scale": spec.scale,
        "model": spec.model.name, "algorithm": spec.algorithm.name, "mode": spec.job.mode,
        "started": previous.get("started", started),
    }
    resumptions = [*previous.get("resumptions", [])]
    if resume:
        resumptions.append({"at": started, "from_step": resume["from_step"],
                            "previous_status": previous.get("status", "crashed"),
                            "previous_reason": previous.get("reason", "no summary written")})  # fmt: skip
    try:
        runner = load(PLANNED if spec.planner else get_mode(spec.job.mode).runner)
        body = runner(spec, run, progress)
        if synthetic:
            body = without_accuracy(body)
        body.update(summary_block(from_summary(body), spec.report.accuracy_levels))
        base.update(body, status="completed")
    except KeyboardInterrupt:
        base.update(status="interrupted", reason="Ctrl-C")
        raise
    except Exception as err:
        base.update(status="failed", reason=f"{type(err).__name__}: {err}")
        run.event("error", traceback=traceback.format_exc())
        raise
    finally:
        if resumptions:
            base["resumptions"] = resumptions
        base["wall_time_s"] = previous.get("wall_time_s", 0.0) + time.time() - started
        base["provenance"] = provenance.finish(made_by)
        run.event("end", status=base.get("status", "failed"))
        run.close()  # flushes every metric written so far, also on failure
        run.write_summary(base)
    if not synthetic:
        accuracy_figure([run.path], run.path / "accuracy", spec.name)
    return run


PLANNED = "testbed.controller.planned:run_planned"
SYNTHETIC_NOTE = "synthetic: generated data, for timing, power and planning only; no accuracy"


def without_accuracy(body: dict[str, Any]) -> dict[str, Any]:
    """A run on generated data reports no accuracy, and says why."""
    return {**body, "final_test_accuracy": None, "best_test_accuracy": None, "evaluations": [],
            "data": SYNTHETIC_NOTE}  # fmt: skip
