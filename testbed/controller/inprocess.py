"""Run an experiment in one process: the reference every distributed run is checked against."""

from __future__ import annotations

from typing import Any

from testbed.controller.kt_run import run_kt
from testbed.controller.sinks import close_influx, open_influx
from testbed.data import load_dataset
from testbed.metrics.run_dir import RunDir
from testbed.planner.profile import profile_stages
from testbed.spec.experiment import Spec
from testbed.training.loop import Recorder, environment_info, train
from testbed.training.session import Session, configure_threads


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


def run_inprocess(spec: Spec, run: RunDir, progress: bool = True) -> dict[str, Any]:
    """Train the spec's model in this process; writes metrics and returns the summary body."""
    if spec.algorithm.name == "kt":
        return run_kt(spec, run, progress)
    configure_threads(spec.training.threads)
    data = load_dataset(spec.data.dataset)
    run.event("data_loaded", source=data.source)
    session = Session.build(spec, data)
    tags = {"run": run.run_id, "experiment": spec.name, "mode": spec.job.mode}
    influx = open_influx(spec, run)
    try:
        result = train(session, Recorder(run, tags, [influx] if influx else None), progress)
    finally:
        sink_counts = close_influx(influx, run)
    summary: dict[str, Any] = {
        **result,
        **sink_counts,
        **environment_info(data),
        "params": session.param_counts(),
        "stages": [list(s.units) for s in session.stages],
    }
    if session.sgs:
        summary["sg_cost"] = sg_cost(session)
    return summary
