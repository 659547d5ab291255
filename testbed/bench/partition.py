"""Benchmark `partition`: the partitioner's splits measured on emulated edge devices.

Four parts, each its own command so that each fits one quiet window (`make bench
NAME=partition-<part>`; `make bench NAME=partition` runs them all), each adding its section to
results/bench/partition.json and redrawing partition.png; the homogeneous part also runs one
model at a time, `partition-homogeneous-eight-layer` or `partition-homogeneous-vgg16`):

- homogeneous: 4 devices at 0.4 CPU / 1 GB, 1 Gbit; eight-layer and VGG16 (quarter width) with
  layer-granular units; sg on the partitioner's split against bp-local on one such device, and
  against its own in-run bound (1 / the slowest sg worker's compute per step);
- hetero: 1 fast device (1.0 CPU) and 3 slow ones (0.4 / 0.25 / 0.25) behind 1 Gbit,
  100 Mbit, 1 Gbit and 10 Mbit links; sg on the partitioner's split, on balance-by-time's and on
  equal units', all on the devices in the same order;
- neighbours: the reduced exhaustive measurement: every split one unit away from the
  partitioner's at one boundary, measured the same way;
- resplit: 3 devices (1.0, 0.4, 0.4 CPU); 30 s into the run the first is cut to 0.25; with
  job.resplit on the schedule, how fast it/s gets back to 0.8 of the new bound, and the
  accuracy curve around the re-split.

Unit times come from profiles taken inside an emulated device of each CPU class
(`planner.device_profile`), cached in results/bench/partition-profiles/. Predicted per-stage
time (compute at the device's quota, transport CPU included) is set beside the measured one
(the worker's process CPU per step / its quota) for every sg run of the first three parts.
Needs root; without it the runs degrade to loopback processes and the JSON says so.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

from testbed.bench import BENCHES, bench_dir, command, write_result
from testbed.planner.chain_profile import ChainTimes, chain_sizes
from testbed.planner.partition import (
    Costs,
    Device,
    Plan,
    balance_by_time,
    equal_units,
    partition,
)
from testbed.planner.placement import chain_for
from testbed.spec.experiment import Spec
from testbed.spec.load import parse_spec

BATCH = 64
SG = {"lr": 3.0e-3, "kernel": 1}  # linear cDNI module, 1x1 at conv splits (as the pipeline bench)
MODELS = {"eight-layer": 1.0, "vgg16": 0.25}  # width
HOMOGENEOUS = {"cpus": 0.4, "devices": 4, "rate": "1gbit"}
HETERO = [("fast", 1.0, "1gbit"), ("slow1", 0.4, "100mbit"), ("slow2", 0.25, "1gbit"),
          ("slow3", 0.25, "10mbit")]
RESPLIT = {"devices": [("d0", 1.0), ("d1", 0.4), ("d2", 0.4)], "cut_at_s": 30.0, "cut_to": 0.25,
           "iterations": 600, "eval_every": 50}
RUN_S = 30.0  # seconds of training each measured run aims at (steps from the prediction)
TARGETS = {"homogeneous_sg_vs_bp_local": 3.0, "homogeneous_sg_vs_bound": 0.85,
           "hetero_vs_balance_by_time": 1.3, "hetero_vs_equal": 2.0,
           "hetero_vs_best_measured": 0.97, "resplit_recovery_s": 30.0,
           "resplit_fraction_of_bound": 0.8, "prediction_median_error": 0.10}
NAME = "partition"


# --- specs ---------------------------------------------------------------------------------------
def spec_for(model: str, mode: str, split: list[str] | None, devices: list[tuple[str, float, str]],
             steps: int, extra_job: dict[str, Any] | None = None,
             schedule: list[dict[str, Any]] | None = None, eval_every: int | None = None) -> Spec:
    """An emulated run on `devices` (name, cpus, link rate), stage i on device i."""
    raw = {
        "name": f"partition-{model}-{mode}",
        "model": {"name": model, "width": MODELS[model], "split_after": split},
        "algorithm": {"name": "sg" if mode == "sg" else "bp", "sg": SG},
        "training": {"batch_size": BATCH, "lr": 1.0e-3, "iterations": steps,
                     "eval_every": eval_every or steps, "log_every": 10, "eval_samples": 1000,
                     "threads": 1},
        "job": {"mode": mode, "startup_timeout_s": 400, **(extra_job or {})},
        "cluster": {
            "backend": "local",
            "devices": [{"name": n, "profile": "edge", "cpus": c, "memory": "1g"}
                        for n, c, _ in devices],
            "links": [{"device": n, "rate": r} for n, _, r in devices if r and len(devices) > 1],
            "schedule": schedule or [],
        },
    }  # fmt: skip
    if mode != "bp-local":
        raw["placement"] = {str(i): n for i, (n, _, _) in enumerate(devices)}
    return parse_spec(raw, f"bench partition {model} {mode}")


# --- profiles and plans --------------------------------------------------------------------------
def profile(model: str, cpus: float, root: Path | None) -> ChainTimes:
    """Unit times measured inside a device of this CPU class (cached per model and class)."""
    from testbed.planner.device_profile import profile_on_device

    cache = bench_dir(root) / "partition-profiles" / f"{model}-{cpus:g}cpu-b{BATCH}.json"
    if cache.is_file():
        return ChainTimes.from_dict(json.loads(cache.read_text()))
    spec = spec_for(model, "sg", None, [("prof", cpus, "")], 10)
    measured = profile_on_device(spec, "prof")
    times = ChainTimes.from_dict(measured)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({**times.as_dict(), "fidelity_level": measured["fidelity_level"],
                                 "cpus": cpus}, indent=1) + "\n")
    print(f"partition: profiled {model} at {cpus} CPU", flush=True)
    return times


def costs_for(model: str, devices: list[tuple[str, float, str]], root: Path | None) -> Costs:
    """The cost model with each device's unit times measured on its own CPU class."""
    from testbed.emulation.units import parse_rate

    spec = spec_for(model, "sg", None, devices, 10)
    sizes = chain_sizes(spec)
    ref = chain_for(spec, sizes, profile(model, devices[0][1], root))
    out = []
    for name, cpus, rate in devices:
        times = profile(model, cpus, root)
        out.append(Device(name, speed=cpus, memory_bytes=2**30,
                          link_bps=float(parse_rate(rate)) if rate and len(devices) > 1 else None,
                          unit_s=times.unit_s, sg_s=times.sg_s, stage_s=times.stage_s,
                          wire_s_per_byte=times.wire_s_per_byte))
    return Costs(ref, out)


def steps_for(plan: Plan, low: int = 40, high: int = 200) -> int:
    return max(low, min(high, round(plan.it_s * RUN_S)))


# --- runs ----------------------------------------------------------------------------------------
def measure(spec: Spec, root: Path | None) -> dict[str, Any]:
    """One emulated run: it/s, accuracy, per-worker step costs, fidelity."""
    from testbed.bench.pipeline import run_one
    from testbed.metrics.run_dir import read_summary

    row = run_one(spec, root)
    s = read_summary(Path(row["run"]))
    row.update(fidelity_level=s.get("fidelity_level"), resplit=s.get("resplit"),
               evaluations=s.get("evaluations"))
    print(f"partition: {spec.name} {spec.model.split_after}: {row['it_s']:.2f} it/s", flush=True)
    return row


def predicted_vs_measured(plan: Plan, row: dict[str, Any],
                          devices: list[tuple[str, float, str]]) -> list[dict[str, Any]]:
    """Per stage: predicted seconds (compute at the device's quota) beside the worker's process
    CPU per step over its quota, and its compute timer's seconds per step."""
    cpus = {n: c for n, c, _ in devices}
    rows = []
    for k, stage in enumerate(plan.stages):
        w = row.get("per_worker", {}).get(stage.device, {})
        cpu = w.get("process_cpu_per_step_s")
        measured = cpu / cpus[stage.device] if cpu else None
        rows.append({"stage": k, "device": stage.device, "units": stage.last - stage.first + 1,
                     "predicted_s": stage.compute_s, "link_s": stage.link_s,
                     "measured_s": measured, "compute_timer_s": w.get("compute_per_step_s"),
                     "error": stage.compute_s / measured - 1 if measured else None})
    return rows


def in_run_bound(row: dict[str, Any]) -> float | None:
    times = [w["compute_per_step_s"] for w in row.get("per_worker", {}).values()
             if w.get("compute_per_step_s")]
    return 1.0 / max(times) if times else None


def _run_plan(model: str, plan: Plan, costs: Costs, devices: list[tuple[str, float, str]],
              root: Path | None) -> dict[str, Any]:
    steps = steps_for(plan)
    row = measure(spec_for(model, "sg", plan.split_after(costs.chain), devices, steps), root)
    bound = in_run_bound(row)
    return {"split_after": plan.split_after(costs.chain), "steps": steps,
            "predicted_bound_it_s": plan.it_s, "in_run_bound_it_s": bound,
            "sg_vs_in_run_bound": row["it_s"] / bound if bound else None,
            "stages": predicted_vs_measured(plan, row, devices), "measured": row}


# --- parts ---------------------------------------------------------------------------------------
def homogeneous(root: Path | None, models: tuple[str, ...] = tuple(MODELS)) -> dict[str, Any]:
    h = HOMOGENEOUS
    devices = [(f"edge{i}", h["cpus"], h["rate"]) for i in range(h["devices"])]
    cells = {}
    for model in models:
        costs = costs_for(model, devices, root)
        plan = partition(costs, h["devices"])
        sg = _run_plan(model, plan, costs, devices, root)
        local_steps = max(40, sg["steps"] // 3)
        bp = measure(spec_for(model, "bp-local", None, devices[:1], local_steps), root)
        cells[model] = {"sg": sg, "bp_local": bp, "by_time_bound_it_s":
                        balance_by_time(costs, h["devices"]).it_s,
                        "sg_vs_bp_local": sg["measured"]["it_s"] / bp["it_s"]}
    return {"setup": h, "cells": cells}


def hetero(root: Path | None) -> dict[str, Any]:
    costs = costs_for("eight-layer", HETERO, root)
    k = len(HETERO)
    plans = {"partitioner": partition(costs, k), "balance_by_time": balance_by_time(costs, k),
             "equal_units": equal_units(costs, k)}
    runs = {name: _run_plan("eight-layer", p, costs, HETERO, root) for name, p in plans.items()}
    it = {name: r["measured"]["it_s"] for name, r in runs.items()}
    return {"devices": HETERO, "runs": runs,
            "ratios": {"vs_balance_by_time": it["partitioner"] / it["balance_by_time"],
                       "vs_equal_units": it["partitioner"] / it["equal_units"]}}


def neighbours(root: Path | None) -> dict[str, Any]:
    """Every split one unit from the partitioner's at one boundary (the reduced search space)."""
    costs = costs_for("eight-layer", HETERO, root)
    best = partition(costs, len(HETERO))
    runs = {}
    for b in range(len(best.ends)):
        for step in (-1, 1):
            ends = list(best.ends)
            ends[b] += step
            lo, hi = (ends[b - 1] if b else -1), (ends[b + 1] if b + 1 < len(ends) else costs.chain.n - 1)
            if lo < ends[b] < hi:
                p = costs.plan(best.devices, ends)
                runs[",".join(p.split_after(costs.chain))] = _run_plan("eight-layer", p, costs,
                                                                        HETERO, root)
    return {"space": "the partitioner's split with one boundary moved by one unit", "runs": runs}


def resplit(root: Path | None) -> dict[str, Any]:
    """The cut: job.resplit on the schedule; it/s over time from the last stage's points."""
    from testbed.metrics.run_dir import read_metrics

    r = RESPLIT
    devices = [(n, c, "1gbit") for n, c in r["devices"]]
    costs = costs_for("eight-layer", devices, root)
    plan = partition(costs, len(devices))
    schedule = [{"at_s": r["cut_at_s"], "device": devices[0][0], "cpus": r["cut_to"]}]
    job = {"resplit": {"on": "schedule", "threshold": 0.1, "min_interval_s": 5}}
    spec = spec_for("eight-layer", "sg", plan.split_after(costs.chain), devices, r["iterations"],
                    job, schedule, r["eval_every"])
    row = measure(spec, root)
    run = Path(row["run"])
    last = [(p["t"], p["step"]) for p in read_metrics(run, "train")]
    workers: dict[str, list[tuple[int, float]]] = {}
    for p in read_metrics(run, "worker"):
        workers.setdefault(p["worker"], []).append((p["step"], p["compute_s"]))
    cut = next((e["t"] for e in _events(run) if e["event"] == "link_changed"), None)
    return {"setup": r, "initial_split": plan.split_after(costs.chain), "measured": row,
            **recovery(row, last, workers, cut)}


def _events(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]


def recovery(row: dict[str, Any], series: list[tuple[float, int]],
             workers: dict[str, list[tuple[int, float]]], cut: float | None) -> dict[str, Any]:
    """When it/s (5 s windows of the last stage's steps, Unix times) got back to 0.8 of the new
    bound after the cut (Unix time): 1 / the slowest worker's compute per step over the run's
    last third (the in-run bound, as the other parts use it)."""
    done = (row.get("resplit") or {}).get("resplits", [])
    if len(series) < 3 or not done or cut is None:
        return {"recovered_after_s": None, "why": "no re-split, cut or series"}
    per_step = []
    for points in workers.values():
        tail = points[len(points) * 2 // 3 :]
        if len(tail) >= 2 and tail[-1][0] > tail[0][0]:
            per_step.append((tail[-1][1] - tail[0][1]) / (tail[-1][0] - tail[0][0]))
    bound = 1.0 / max(per_step)
    rates = []
    for i, (t, step) in enumerate(series):
        j = next((k for k in range(i, len(series)) if series[k][0] - t >= 5.0), None)
        if j is not None:  # (window start, end, it/s), seconds since the cut
            rates.append((t - cut, series[j][0] - cut, (series[j][1] - step) / (series[j][0] - t)))
    back = next((end for start, end, v in rates if start >= 0 and v >= 0.8 * bound), None)
    before = [v for start, end, v in rates if end < 0]
    return {"new_bound_it_s": bound, "rates_since_cut": rates,
            "before_cut_it_s": statistics.median(before) if before else None,
            "recovered_after_s": back, "resplits": done}


PARTS = {"homogeneous": homogeneous, "hetero": hetero, "neighbours": neighbours,
         "resplit": resplit}
# one model of the homogeneous part at a time (each fits a quiet window); cells merge
ONE_MODEL = {f"homogeneous-{m}": (lambda root, m=m: homogeneous(root, (m,))) for m in MODELS}


def run_parts(parts: list[str], root: Path | None) -> Path:
    from testbed.metrics import provenance

    prov = provenance.start(command(NAME if len(parts) > 1 else f"{NAME}-{parts[0]}"))
    out = bench_dir(root) / f"{NAME}.json"
    body = json.loads(out.read_text()) if out.is_file() else {}
    body.pop("provenance", None)
    for part in parts:
        started = time.time()
        if part in ONE_MODEL:
            done = ONE_MODEL[part](root)
            cells = {**body.get("homogeneous", {}).get("cells", {}), **done["cells"]}
            body["homogeneous"] = {**done, "cells": cells, "wall_s": time.time() - started}
            continue
        body[part] = {**PARTS[part](root), "wall_s": time.time() - started}
    body.update(targets=TARGETS, summary=summarize(body))
    write_result(out, body, prov)
    from testbed.report.partition import bench_figure

    bench_figure(body, out.with_suffix(".png"))
    return out


def summarize(body: dict[str, Any]) -> dict[str, Any]:
    """The headline ratios from whatever parts are present."""
    s: dict[str, Any] = {}
    errors = []
    for cell in body.get("homogeneous", {}).get("cells", {}).values():
        errors += [abs(x["error"]) for x in cell["sg"]["stages"] if x["error"] is not None]
    if "hetero" in body:
        s["hetero"] = body["hetero"]["ratios"]
        for r in body["hetero"]["runs"].values():
            errors += [abs(x["error"]) for x in r["stages"] if x["error"] is not None]
        if "neighbours" in body:
            best = max([r["measured"]["it_s"] for r in body["neighbours"]["runs"].values()]
                       + [body["hetero"]["runs"]["partitioner"]["measured"]["it_s"]])
            s["hetero"]["vs_best_measured"] = (
                body["hetero"]["runs"]["partitioner"]["measured"]["it_s"] / best)
    if "homogeneous" in body:
        s["homogeneous"] = {m: {"sg_vs_bp_local": c["sg_vs_bp_local"],
                                "sg_vs_in_run_bound": c["sg"]["sg_vs_in_run_bound"]}
                            for m, c in body["homogeneous"]["cells"].items()}
    if "resplit" in body:
        s["resplit"] = {k: body["resplit"].get(k)
                        for k in ("recovered_after_s", "new_bound_it_s", "before_cut_it_s")}
    if errors:
        s["prediction_median_abs_error"] = statistics.median(errors)
        s["prediction_stages"] = len(errors)
    return s


def main(root: Path | None = None) -> Path:
    return run_parts(list(PARTS), root)


BENCHES.register(NAME)(main)
for _part in [*PARTS, *ONE_MODEL]:
    BENCHES.register(f"{NAME}-{_part}")(
        lambda root=None, _p=_part: run_parts([_p], root))  # type: ignore[misc]
