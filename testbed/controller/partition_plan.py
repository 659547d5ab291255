"""`testbed plan` for model-parallel specs: profile the units, partition, write table + figure."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testbed.models import get_model
from testbed.planner.chain_profile import ChainTimes, chain_sizes, profile_chain
from testbed.planner.partition import Costs, Order, Plan
from testbed.planner.placement import (
    Partitioned,
    candidate_devices,
    chain_for,
    devices_of,
    pair_links,
    partition_spec,
    plan_dict,
)
from testbed.spec.experiment import Spec


def load_or_profile(spec: Spec, profile: Path | None) -> tuple[ChainTimes, str]:
    """Unit times from a saved profile (a ChainTimes JSON, e.g. a benchmark's), else measured
    now in this process on the host with the spec's threads (1 by default)."""
    if profile is not None:
        raw = json.loads(profile.read_text())
        return ChainTimes.from_dict(raw.get("chain", raw)), str(profile)
    from testbed.training.tfsetup import configure_threads

    configure_threads(spec.training.threads or 1)
    return profile_chain(spec, min_s=0.3), "host (this process, uncapped)"


def plan_partition(spec: Spec, times: ChainTimes, stages: int | None,
                   order: Order = "fixed") -> Partitioned:
    """The spec's cluster devices and links, its model's sizes, the given unit times."""
    names = candidate_devices(spec)
    costs = Costs(chain_for(spec, chain_sizes(spec), times), devices_of(spec, names),
                  pair_links(spec))
    return partition_spec(costs, stages if stages is not None else len(names), order)


def table(result: Partitioned) -> list[str]:
    """Lines for the terminal: each stage of the plan, then the plan against the baselines."""
    plan, chain = result.plan, result.costs.chain
    lines = [f"{'stage':5} {'device':10} {'units':44} {'compute ms':>10} {'link ms':>8} "
             f"{'MiB':>6}"]
    for k, s in enumerate(plan.stages):
        units = chain.names[s.first] + ("" if s.first == s.last else f" .. {chain.names[s.last]}")
        lines.append(f"{k:<5} {s.device:10} {units:44} {s.compute_s * 1e3:10.1f} "
                     f"{s.link_s * 1e3:8.1f} {s.memory_bytes / 2**20:6.0f}")
    lines.append(f"split_after: {plan.split_after(chain)}")
    lines.append(f"{'plan':18} bound {plan.it_s:8.2f} it/s")
    for name, base in (("equal units", result.equal), ("balance by time", result.by_time)):
        lines.append(f"{name:18} bound {base.it_s:8.2f} it/s   plan / it: "
                     f"{plan.it_s / base.it_s:.2f}x   split_after {base.split_after(chain)}")
    return lines


def write(result: Partitioned, out: Path, extra: dict[str, Any]) -> list[Path]:
    """out.json (the plan, baselines, devices) and out.png (predicted time per stage)."""
    from testbed.report.partition import partition_figure

    out.parent.mkdir(parents=True, exist_ok=True)
    json_path = out.with_suffix(".json")
    json_path.write_text(json.dumps({**extra, **result.as_dict()}, indent=2) + "\n")
    return [json_path, *partition_figure(result.as_dict(), out.with_suffix(".png"))]


@dataclass
class RunPartition:
    """A run's partition: the spec it runs (split and placement planned when auto), the cost
    model over its stage devices in pipeline order, the plan in force, what the summary keeps."""

    spec: Spec
    costs: Costs
    plan: Plan
    record: dict[str, Any]


def plan_run(spec: Spec, event: Any) -> RunPartition | None:
    """With split_after: auto or job.resplit: profile the units on the host (scaled to each
    device by its CPU quota) and plan, or price the spec's own split; else None."""
    if spec.model.split_after != "auto" and spec.job.resplit is None:
        return None
    from testbed.controller.plan import stage_placement
    from testbed.planner.device_profile import profile_on_host
    from testbed.planner.placement import planned_spec

    times = ChainTimes.from_dict(profile_on_host(spec))
    if spec.model.split_after == "auto":
        result = plan_partition(spec, times, None)
        spec = planned_spec(spec, result.plan, result.costs.chain)
        event("partition_planned", split_after=spec.model.split_after,
              placement=spec.placement, bound_it_s=result.plan.it_s)
        record = result.as_dict()
    else:
        record = {}
    placement = stage_placement(spec) or {}
    devices = [placement[str(i)] for i in range(len(placement))]
    costs = Costs(chain_for(spec, chain_sizes(spec), times), devices_of(spec, devices),
                  pair_links(spec))
    model = get_model(spec.model.name)
    points = model.split_points()
    plan = costs.plan(devices, [points[p] for p in spec.model.split_after or model.default_split])
    record.setdefault("plan", plan_dict(plan, costs.chain))
    return RunPartition(spec, costs, plan, {"profile": "host, scaled by CPU quota",
                                            "chain": times.as_dict(), **record})


def with_measured(partition: dict[str, Any], per_worker: dict[str, Any]) -> dict[str, Any]:
    """The plan's predicted seconds per stage beside each stage worker's measured compute per
    step (workers are named after their devices) and the relative error."""
    rows = []
    for k, stage in enumerate(partition["plan"]["stages"]):
        measured = per_worker.get(stage["device"], {}).get("compute_per_step_s")
        rows.append({"stage": k, "device": stage["device"], "predicted_s": stage["compute_s"],
                     "measured_s": measured,
                     "error": stage["compute_s"] / measured - 1 if measured else None})
    errors = [abs(r["error"]) for r in rows if r["error"] is not None]
    median = statistics.median(errors) if errors else None
    return {**partition, "predicted_vs_measured": rows, "median_abs_error": median}
