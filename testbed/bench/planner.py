"""Benchmark `planner` (issue 14): the seed's evaluation of the cluster planner on emulated hardware.

Per cell (model x link rate), on `experiments/planner-seed.yaml`'s desktop / Jetson TX2 / TX1:
profile the three devices (the planner's own profiling runs), estimate the 7 configurations, then
run every configuration for the same S steps (the ground truth: the emulated meter's energy, the
measured wall time) and compare, for each of the 4 preferences, the planner's pick with the true
best. `planner-quick` is one cell (the TF tutorial convnet, 100 Mbit) for smoke runs; `planner`
the seed's 5 models x 3 link rates. Both run S = 30 steps per configuration.

What does not depend on the link rate is measured once per model and shared by its cells
(`run_model`): the devices' profiling runs (one device alone, no link) and the ground truth of
the three one-device configurations (nothing crosses a link); each rate adds its link probe and
the four multi-device configurations. Every cell records the seconds of each of its runs
(`truth_s`, `probe_s`, `profiling_devices_s`), from which docs/benchmarks.md sizes the full set.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from testbed.bench import BENCHES, bench_dir, command, write_result

EXPERIMENT = "planner-seed"
PREFERENCES = ("time", "power", "energy", "edp")
QUICK = (("tf-cifar10", "100mbit"),)
FULL = tuple((m, r) for m in ("alexnet-cifar", "tf-cifar10", "nin-cifar", "resnet20",
                              "squeezenet-cifar") for r in ("1gbit", "100mbit", "10mbit"))
STEPS = {"planner": 30, "planner-quick": 30}  # ground-truth steps per configuration


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation (no ties expected among measured floats)."""
    def ranks(xs: Sequence[float]) -> list[int]:
        order = sorted(range(len(xs)), key=xs.__getitem__)
        out = [0] * len(xs)
        for r, i in enumerate(order):
            out[i] = r
        return out

    n = len(a)
    if n < 2:
        return float("nan")
    ra, rb = ranks(a), ranks(b)
    return 1 - 6 * sum((x - y) ** 2 for x, y in zip(ra, rb, strict=True)) / (n * (n * n - 1))


def decisions(predicted: Mapping[str, Mapping[str, float]],
              measured: Mapping[str, Mapping[str, float]]) -> list[dict[str, Any]]:
    """Per preference: the pick, the true best and second best, the regret (how much worse the
    pick measured than the best), and the rank correlation of predicted vs measured. Pure.

    predicted / measured: configuration -> metric -> value (lower is better)."""
    configs = sorted(measured)
    out = []
    for m in PREFERENCES:
        pick = min(configs, key=lambda c: predicted[c][m])
        truth = sorted(configs, key=lambda c: measured[c][m])
        out.append({
            "prefer": m, "pick": pick, "best": truth[0],
            "second": truth[1] if len(truth) > 1 else None,
            "correct": pick == truth[0], "top2": pick in truth[:2],
            "regret": measured[pick][m] / measured[truth[0]][m] - 1,
            "rank_correlation": spearman([predicted[c][m] for c in configs],
                                         [measured[c][m] for c in configs]),
        })  # fmt: skip
    return out


def errors(predicted: Mapping[str, Mapping[str, float]],
           measured: Mapping[str, Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """Relative prediction error per metric (step, power, energy): median and worst over the
    configurations. Pure."""
    out = {}
    for m in ("step_s", "power_w", "energy_j", "time_s"):
        errs = [abs(predicted[c][m] - measured[c][m]) / measured[c][m] for c in measured]
        out[m] = {"median": statistics.median(errs), "worst": max(errs)}
    return out


def _metrics(d: Mapping[str, Any]) -> dict[str, float]:
    return {"time": d["time_s"], "power": d["power_w"], "energy": d["energy_j"],
            "edp": d["edp_js"], "time_s": d["time_s"], "step_s": d["step_s"],
            "power_w": d["power_w"], "energy_j": d["energy_j"]}  # fmt: skip


def by_model(cells_set: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    """The (model, rate) cells grouped by model, in order: one profiling per model. Pure."""
    out: dict[str, list[str]] = {}
    for model, rate in cells_set:
        out.setdefault(model, []).append(rate)
    return out


def bench_spec(model: str, rate: str, steps: int) -> Any:
    from testbed.spec.load import load_spec

    spec = load_spec(EXPERIMENT, "smoke", {"model.name": model, "cluster.links.*.rate": rate})
    assert spec.planner is not None
    return spec.model_copy(update={"training": spec.training.model_copy(
        update={"iterations": spec.planner.profile.total + steps})})  # fmt: skip


def run_model(
    model: str, rates: Sequence[str], steps: int, root: Path, report: Any
) -> list[dict[str, Any]]:
    """One cell per link rate for `model`, sharing what does not depend on the rate.

    The devices are profiled once: a profiling run is one device alone, with no link
    (`profiling.device_spec`), so it is the same run at every rate; only the link probe is
    repeated per rate. Likewise a one-device configuration's ground truth crosses no link
    (`planned.spec_for`): it runs once and scores at every rate. Each cell's `profiling_s` is
    what a user pays for it (the devices' profiling plus that rate's probe)."""
    from testbed.controller.planned import plan_record, profiling_record
    from testbed.planner.profiling import profile_cluster

    out = root / model
    out.mkdir(parents=True, exist_ok=True)
    first = bench_spec(model, rates[0], steps)
    assert first.planner is not None
    devices = profile_cluster(bare_spec(first), first.planner.profile, out / "profiling", report)
    alone: dict[str, tuple[dict[str, float], str, float]] = {}  # one-device truths, any rate
    cells = []
    for rate in rates:
        spec = bench_spec(model, rate, steps)
        profiling, plan, probe_s = rate_plan(spec, devices, steps, report)
        (out / rate).mkdir(exist_ok=True)
        (out / rate / "plan.json").write_text(
            json.dumps(plan_record(plan, profiling), indent=2, default=str) + "\n")
        cell = truths(spec, plan, steps, out, rate, alone, report)
        cells.append({"model": model, "rate": rate, "profiling_s": profiling.seconds,
                      "profiling_devices_s": devices.seconds, "probe_s": probe_s,
                      **cell, **timings(profiling, steps),
                      "profiling": profiling_record(profiling)})  # fmt: skip
    return cells


def bare_spec(spec: Any) -> Any:
    """The spec without links: what a device's profiling run (one device alone) uses."""
    assert spec.cluster is not None
    return spec.model_copy(update={"cluster": spec.cluster.model_copy(update={"links": []})})


def rate_plan(spec: Any, devices: Any, steps: int, report: Any) -> tuple[Any, Any, float]:
    """The devices' profiling completed by this spec's link probe, and the plan made from it
    (profiling, plan, the probe's seconds)."""
    import time
    from dataclasses import replace

    from testbed.planner.profiling import probe_links
    from testbed.planner.ranking import make_plan

    assert spec.planner is not None
    started = time.monotonic()
    links, notes = probe_links(spec, report)
    probe_s = time.monotonic() - started
    profiling = replace(devices, links=links, notes=notes, seconds=devices.seconds + probe_s)
    plan = make_plan(profiling.profiles, profiling.links, profiling.workload(steps),
                     spec.planner.prefer)  # fmt: skip
    return profiling, plan, probe_s


def truths(
    spec: Any, plan: Any, steps: int, out: Path, rate: str,
    alone: dict[str, tuple[dict[str, float], str, float]], report: Any,
) -> dict[str, Any]:
    """Run every feasible configuration of `plan` for `steps` steps (one-device ones only when
    `alone` has no run of them yet) and score the planner's picks against what they measured."""
    import time

    from testbed.controller.experiment import run_experiment
    from testbed.controller.planned import spec_for
    from testbed.metrics.run_dir import read_summary
    from testbed.planner.outcome import outcome
    from testbed.planner.profiling import read_jsonl

    model = spec.model.name
    predicted, measured, runs, failed, seconds, reused = {}, {}, {}, {}, {}, []
    for est in plan.ranked:
        label = est.config.label
        single = len(est.config.devices) == 1
        if single and label in alone:
            measured[label], runs[label], seconds[label] = alone[label]
            predicted[label] = _metrics(est.as_dict())
            reused.append(label)
            continue
        report(f"{model} {rate}: ground truth {label}")
        started = time.monotonic()
        where = out / "truth" if single else out / rate / "truth"
        try:
            run = run_experiment(spec_for(spec, est.config, steps), where, progress=False)
            summary = read_summary(run.path)
            got = outcome(summary, read_jsonl(run.path / "events.jsonl"))
        except KeyboardInterrupt:  # the bench's time limit: score what was measured
            report("interrupted: scoring the configurations measured so far")
            failed[label] = "interrupted (time limit)"
            break
        except Exception as err:  # noqa: BLE001 - recorded and reported, the other runs go on
            report(f"{label}: ground-truth run failed: {err}")
            failed[label] = f"{type(err).__name__}: {err}"
            continue
        predicted[label] = _metrics(est.as_dict())
        measured[label] = _metrics(got.as_dict())
        runs[label] = str(run.path.relative_to(out.parent))
        seconds[label] = time.monotonic() - started
        if single:
            alone[label] = (measured[label], runs[label], seconds[label])
    if not measured:
        raise RuntimeError(f"no configuration measured: {failed}")
    return {
        "steps": steps, "predicted": predicted, "measured": measured,
        "infeasible": [{"config": i.config.label, "reason": i.reason} for i in plan.infeasible],
        "decisions": decisions(predicted, measured), "errors": errors(predicted, measured),
        "runs": runs, "failed": failed, "truth_s": seconds, "reused": reused, "synthetic": True,
    }  # fmt: skip


def timings(profiling: Any, steps: int) -> dict[str, Any]:
    """How long ranking takes: these 3 devices (best of 5) and 5 devices (31 configurations)."""
    from testbed.planner.ranking import make_plan

    work = profiling.workload(steps)
    timing = [make_plan(profiling.profiles, profiling.links, work, "edp").estimation_s
              for _ in range(5)]  # fmt: skip
    five = five_devices(profiling.profiles, profiling.links)
    timing5 = [make_plan(*five, work, "edp") for _ in range(5)]
    return {"estimation_s": min(timing),
            "estimation_5_devices_s": min(p.estimation_s for p in timing5),
            "configurations_5_devices": len(timing5[0].ranked)}  # fmt: skip


def five_devices(profiles: Mapping[str, Any], links: Any) -> tuple[dict[str, Any], Any]:
    """Five devices (31 configurations) from the measured ones, for timing the estimation."""
    from dataclasses import replace

    from testbed.planner.cluster import Links

    base = [p for p in profiles.values() if p.feasible]
    five = {f"d{i}": replace(base[i % len(base)], name=f"d{i}") for i in range(5)}
    rates = {f"d{i}": links.rate(base[i % len(base)].name) for i in range(5)}
    return five, Links(rates, latency_s=links.latency_s)


def totals(cells: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Best-pick accuracy, second-best rate, regret and errors over all cells. Pure."""
    ds = [d for c in cells for d in c["decisions"]]
    step = [c["errors"]["step_s"] for c in cells]
    energy = [c["errors"]["energy_j"] for c in cells]
    return {
        "decisions": len(ds),
        "best_pick": sum(d["correct"] for d in ds) / len(ds),
        "top2": sum(d["top2"] for d in ds) / len(ds),
        "median_regret": statistics.median(d["regret"] for d in ds),
        "worst_regret": max(d["regret"] for d in ds),
        "step_error_median": statistics.median(e["median"] for e in step),
        "step_error_worst": max(e["worst"] for e in step),
        "energy_error_median": statistics.median(e["median"] for e in energy),
        "energy_error_worst": max(e["worst"] for e in energy),
        "rank_correlation_median": statistics.median(d["rank_correlation"] for d in ds),
        "profiling_s": [c["profiling_s"] for c in cells],
        "estimation_s_max": max(c["estimation_s"] for c in cells),
        "estimation_5_devices_s_max": max(c["estimation_5_devices_s"] for c in cells),
    }  # fmt: skip


def figure(cells: Sequence[Mapping[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, m, unit in ((axes[0], "time_s", "s"), (axes[1], "energy_j", "J")):
        for c in cells:
            xs = [c["measured"][k][m] for k in c["measured"]]
            ys = [c["predicted"][k][m] for k in c["measured"]]
            ax.scatter(xs, ys, label=f"{c['model']} {c['rate']}", s=18)
            for k, x, y in zip(c["measured"], xs, ys, strict=True):
                ax.annotate(k, (x, y), fontsize=6)
        lo, hi = ax.get_xlim()
        ax.plot([lo, hi], [lo, hi], color="#999", lw=0.8)
        ax.set_xlabel(f"measured {m.split('_')[0]} ({unit})")
        ax.set_ylabel(f"predicted ({unit})")
    axes[0].legend(fontsize=7)
    fig.suptitle("planner: predicted vs measured per configuration (synthetic CIFAR-shaped data)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(name: str, cells_set: Sequence[tuple[str, str]], results_root: Path | None) -> Path:
    from testbed.metrics import provenance

    made_by = provenance.start(command(name))
    out_dir = bench_dir(results_root)
    root = out_dir / name
    root.mkdir(parents=True, exist_ok=True)

    def report(message: str) -> None:
        print(message, flush=True)

    cells: list[dict[str, Any]] = []
    for model, rates in by_model(cells_set).items():
        cells.extend(run_model(model, rates, STEPS[name], root, report))
        (root / "cells.json").write_text(json.dumps(cells, indent=2, default=str) + "\n")
    figure(cells, out_dir / f"{name}.png")
    body = {"experiment": EXPERIMENT, "data": "synthetic (cifar10-synthetic): timing and power "
            "only", "cells": cells, "totals": totals(cells), "figure": f"{name}.png",
            "seed": {"best_pick": 0.7667, "step_error": [0.0098, 0.1601]}}  # fmt: skip
    return write_result(out_dir / f"{name}.json", body, made_by)


def rescored_cell(cell: Mapping[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    """A cell of a `planner` run estimated again by this checkout's estimator from the
    profiling its plan.json recorded, scored against the same measured ground truth."""
    from testbed.controller.planned import profiling_from_record
    from testbed.planner.ranking import make_plan

    profiling = profiling_from_record(record)
    plan = make_plan(profiling.profiles, profiling.links, profiling.workload(cell["steps"]), "time")
    measured = cell["measured"]
    predicted = {e.config.label: _metrics(e.as_dict()) for e in plan.ranked
                 if e.config.label in measured}  # fmt: skip
    return {**cell, "predicted": predicted, "decisions": decisions(predicted, measured),
            "errors": errors(predicted, measured)}  # fmt: skip


def _stored_plan(out_dir: Path, cell: Mapping[str, Any]) -> dict[str, Any]:
    """A cell's profiling from its plan.json (a run from before cells stored it)."""
    plan = out_dir / "planner" / cell["model"] / cell["rate"] / "plan.json"
    if not plan.is_file():
        raise FileNotFoundError(f"{plan}: no stored profiling; expected the runs of "
                                "`make bench NAME=planner` on this machine")  # fmt: skip
    return dict(json.loads(plan.read_text()))


@BENCHES.register("planner-rescore")
def planner_rescore(results_root: Path | None = None) -> Path:
    """The last `planner` run's cells estimated again by this checkout's estimator (no new runs:
    the profiling each cell stored, or its results/bench/planner/*/*/plan.json, and its ground
    truth)."""
    from testbed.metrics import provenance

    made_by = provenance.start(command("planner-rescore"))
    out_dir = bench_dir(results_root)
    source = json.loads((out_dir / "planner.json").read_text())
    cells = []
    for cell in source["cells"]:
        cells.append(rescored_cell(cell, cell.get("profiling") or _stored_plan(out_dir, cell)))
    figure(cells, out_dir / "planner-rescore.png")
    body = {"experiment": EXPERIMENT, "rescored": {"from": "results/bench/planner.json",
            "commit": source["provenance"]["commit"]}, "cells": cells, "totals": totals(cells),
            "figure": "planner-rescore.png", "seed": source["seed"]}  # fmt: skip
    return write_result(out_dir / "planner-rescore.json", body, made_by)


@BENCHES.register("planner-quick")
def planner_quick(results_root: Path | None = None) -> Path:
    """Cluster planner, one cell (tf-cifar10, 100 Mbit): 7 configurations x 4 preferences."""
    return main("planner-quick", QUICK, results_root)


@BENCHES.register("planner")
def planner(results_root: Path | None = None) -> Path:
    """Cluster planner, the seed's evaluation: 5 models x 3 link rates x 7 configurations."""
    return main("planner", FULL, results_root)
