"""Run an experiment in one process: the reference every distributed run is checked against."""

from __future__ import annotations

from typing import Any

from testbed.controller.kt_run import run_kt
from testbed.controller.sinks import recording
from testbed.metrics.run_dir import RunDir
from testbed.planner.profile import profile_stages, time_head
from testbed.spec.experiment import Spec
from testbed.training.loop import KindRecorder, environment_info, setup, train
from testbed.training.resume import CHECKPOINTS_DIR
from testbed.training.session import Session


def sg_cost(session: Session) -> list[dict[str, Any]]:
    """Extra parameters and measured compute of each SG module relative to its stage."""
    t = session.spec.training
    profiles = profile_stages(session.stages, session.sgs, t.batch_size, session.data.num_classes)
    return [
        {
            **p.as_dict(),
            "extra_params_fraction": p.sg_params / max(p.params, 1),
            "extra_compute_fraction": p.sg_step_s / p.step_s if p.step_s else 0.0,
        }
        for p in profiles[:-1]
    ]


def head_cost(session: Session) -> list[dict[str, Any]]:
    """Parameters and measured compute of each auxiliary head (local) relative to its stage."""
    t = session.spec.training
    profiles = profile_stages(session.stages, None, t.batch_size, session.data.num_classes)
    out = []
    for p, head in zip(profiles, session.heads, strict=False):
        head_s = time_head(session.stages[p.stage], head, t.batch_size)
        out.append({
            "stage": p.stage, "units": list(p.units), "step_s": p.step_s, "params": p.params,
            "head_step_s": head_s, "head_params": head.count_params(),
            "extra_params_fraction": head.count_params() / max(p.params, 1),
            "extra_compute_fraction": head_s / p.step_s if p.step_s else 0.0,
        })
    return out


def run_inprocess(spec: Spec, run: RunDir, progress: bool = True) -> dict[str, Any]:
    """Train the spec's model in this process; writes metrics and returns the summary body."""
    if spec.algorithm.name == "kt":
        return run_kt(spec, run, progress)
    data = setup(spec, run)
    session = Session.build(spec, data)
    with recording(spec, run) as (rec, sink_counts):
        rename = {"sg_loss": "local_loss"} if session.heads else {}  # the heads' mean loss
        result = train(session, KindRecorder(rec, rename=rename), progress,  # type: ignore[arg-type]
                       run.path / CHECKPOINTS_DIR)
    summary: dict[str, Any] = {
        **result,
        **sink_counts,
        **environment_info(data),
        "params": session.param_counts(),
        "stages": [list(s.units) for s in session.stages],
    }
    if session.sgs:
        summary["sg_cost"] = sg_cost(session)
    if session.heads:
        summary["head_cost"] = head_cost(session)
    return summary
