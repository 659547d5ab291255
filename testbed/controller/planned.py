"""A dp-async run whose devices the planner picks: profile every candidate, estimate every
configuration, run the remaining steps on the preferred one, record prediction beside measurement.

Profiling runs are real one-device runs (under <run>/profiling/); their weights are not carried
into the picked run, which trains `training.iterations - planner.profile` steps from scratch.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from testbed.metrics.run_dir import RunDir
from testbed.planner.cluster import Config, DeviceProfile, Links, PowerFit
from testbed.planner.estimate import Estimate
from testbed.planner.outcome import outcome, relative_error
from testbed.planner.profiling import Profiling, profile_cluster, read_jsonl
from testbed.planner.ranking import ClusterPlan, make_plan
from testbed.spec.experiment import Spec

Report = Callable[[str], None]


def spec_for(spec: Spec, config: Config, steps: int) -> Spec:
    """The dp-async spec running `steps` on `config`: its devices, their links, one replica each,
    the server on the configuration's server device."""
    assert spec.cluster is not None
    keep = set(config.devices)
    alone = len(keep) == 1  # server and worker on one device: nothing crosses a link
    cluster = spec.cluster.model_copy(update={
        "devices": [d for d in spec.cluster.devices if d.name in keep],
        "links": [] if alone else [link for link in spec.cluster.links if set(link.key) <= keep],
        "schedule": [] if alone else [e for e in spec.cluster.schedule if set(e.key) <= keep]})  # fmt: skip
    placement = {"ps": config.ps, **{f"replica{i}": d for i, d in enumerate(config.devices)}}
    training = spec.training.model_copy(update={"iterations": steps})
    job = spec.job.model_copy(update={"mode": "dp-async", "replicas": len(config.devices)})
    return spec.model_copy(update={"cluster": cluster, "placement": placement,
                                   "training": training, "job": job, "planner": None})  # fmt: skip


def remaining_steps(spec: Spec) -> int:
    """What is left of training.iterations after the profiling windows (at least one step)."""
    assert spec.planner is not None
    return max(1, spec.training.iterations - spec.planner.profile.total)


def plan_cluster(spec: Spec, out: Path, report: Report) -> tuple[ClusterPlan, Profiling]:
    """Profile the candidates (runs under out/profiling) and rank every configuration."""
    assert spec.planner is not None
    profiling = profile_cluster(spec, spec.planner.profile, out / "profiling", report)
    plan = make_plan(profiling.profiles, profiling.links,
                     profiling.workload(remaining_steps(spec)), spec.planner.prefer)  # fmt: skip
    (out / "plan.json").write_text(json.dumps(plan_record(plan, profiling), indent=2) + "\n")
    return plan, profiling


def plan_record(plan: ClusterPlan, profiling: Profiling) -> dict[str, Any]:
    """plan.json: the ranking, the measured profiles, the links and what profiling cost."""
    return {**plan.as_dict(), **profiling_record(profiling)}


def profiling_record(profiling: Profiling) -> dict[str, Any]:
    """The measured profiles, the links and what profiling cost (`profiling_from_record`)."""
    return {
        "profiling_s": profiling.seconds,
        "profiles": {name: _profile_dict(p) for name, p in profiling.profiles.items()},
        "links": {"bandwidth_bps": dict(profiling.links.bandwidth_bps),
                  "latency_s": profiling.links.latency_s},
        "wire_bytes": {"pull": profiling.pull_bytes, "push": profiling.push_bytes},
        "profiling_runs": profiling.runs,
        "notes": profiling.notes,
    }  # fmt: skip


def _profile_dict(profile: Any) -> dict[str, Any]:
    out = {k: v for k, v in vars(profile).items() if k != "power"}
    out["power_fit"] = vars(profile.power)
    out["startup_cpu_s"] = dict(profile.startup_cpu_s)
    return out


def profiling_from_record(record: dict[str, Any]) -> Profiling:
    """What plan.json holds of a profiling (`plan_record`), read back: estimating again from it
    needs no new runs."""
    profiles = {}
    for name, fields in record["profiles"].items():
        fields = dict(fields)
        power = PowerFit(**fields.pop("power_fit"))
        profiles[name] = DeviceProfile(**fields, power=power)
    links = Links(record["links"]["bandwidth_bps"], latency_s=record["links"]["latency_s"])
    return Profiling(profiles, links, record["wire_bytes"]["pull"], record["wire_bytes"]["push"],
                     record["profiling_s"], record["profiling_runs"], record["notes"])  # fmt: skip


def run_planned(spec: Spec, run: RunDir, progress: bool = True) -> dict[str, Any]:
    """The planner's run: profile, pick, train the rest on the pick; the summary compares."""
    from testbed.controller.distributed import run_distributed

    def report(message: str) -> None:
        run.event("planner", message=message)
        if progress:
            print(message, flush=True)

    started = time.monotonic()
    plan, profiling = plan_cluster(spec, run.path, report)
    pick = plan.pick
    report(f"picked {pick.config.label} (server on {pick.config.ps}) for {plan.prefer}")
    run.event("planner_pick", config=pick.config.label, ps=pick.config.ps)
    overhead = time.monotonic() - started
    body = run_distributed(spec_for(spec, pick.config, remaining_steps(spec)), run, progress)
    body["planner"] = planner_block(plan, profiling, pick, body, run.path, overhead)
    return body


def planner_block(
    plan: ClusterPlan,
    profiling: Profiling,
    pick: Estimate,
    body: dict[str, Any],
    run_path: Path,
    overhead_s: float,
) -> dict[str, Any]:
    """Prediction beside measurement for the picked configuration, and the planning overhead."""
    measured = outcome(body, read_jsonl(run_path / "events.jsonl"))
    errors = {m: relative_error(pick.metric(m), measured.metric(m))
              for m in ("time", "power", "energy", "edp")}  # fmt: skip
    errors["step"] = relative_error(pick.step_s, measured.step_s)
    return {
        "prefer": plan.prefer,
        "pick": pick.config.label,
        "ps": pick.config.ps,
        "predicted": pick.as_dict(),
        "measured": measured.as_dict(),
        "relative_error": errors,
        "overhead_s": {"profiling": profiling.seconds, "estimation": plan.estimation_s,
                       "total": overhead_s},
        "plan": "plan.json",
    }  # fmt: skip
