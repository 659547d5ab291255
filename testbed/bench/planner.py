"""Benchmark `planner` (issue 14): the seed's evaluation of the cluster planner on emulated hardware.

Per cell (model x link rate), on `experiments/planner-seed.yaml`'s desktop / Jetson TX2 / TX1:
profile the three devices (the planner's own profiling runs), estimate the 7 configurations, then
run every configuration for the same S steps (the ground truth: the emulated meter's energy, the
measured wall time) and compare, for each of the 4 preferences, the planner's pick with the true
best. `planner-quick` is one cell (the TF tutorial convnet, 100 Mbit, 30 steps) for smoke runs;
`planner` the seed's 5 models x 3 link rates (60 steps).
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
STEPS = {"planner": 60, "planner-quick": 30}  # ground-truth steps per configuration


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


def run_cell(model: str, rate: str, steps: int, root: Path, report: Any) -> dict[str, Any]:
    """Profile, plan, and run every feasible configuration for `steps` steps."""
    from testbed.controller.experiment import run_experiment
    from testbed.controller.planned import plan_cluster, spec_for
    from testbed.metrics.run_dir import read_summary
    from testbed.planner.outcome import outcome
    from testbed.planner.profiling import read_jsonl
    from testbed.planner.ranking import make_plan
    from testbed.spec.experiment import load_spec

    spec = load_spec(EXPERIMENT, "smoke", {"model.name": model, "cluster.links.*.rate": rate})
    assert spec.planner is not None
    spec = spec.model_copy(update={"training": spec.training.model_copy(
        update={"iterations": spec.planner.profile.total + steps})})  # fmt: skip
    out = root / f"{model}-{rate}"
    out.mkdir(parents=True, exist_ok=True)
    plan, profiling = plan_cluster(spec, out, report)
    work = profiling.workload(steps)
    predicted, measured, runs, failed = {}, {}, {}, {}
    for est in plan.ranked:
        label = est.config.label
        report(f"{model} {rate}: ground truth {label}")
        try:
            run = run_experiment(spec_for(spec, est.config, steps), out / "truth", progress=False)
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
        runs[label] = str(run.path.relative_to(root))
    if not measured:
        raise RuntimeError(f"no configuration measured: {failed}")
    timing = [make_plan(profiling.profiles, profiling.links, work, "edp").estimation_s
              for _ in range(5)]  # fmt: skip
    five = five_devices(profiling.profiles, profiling.links)
    timing5 = [make_plan(*five, work, "edp") for _ in range(5)]
    return {
        "model": model, "rate": rate, "steps": steps, "profiling_s": profiling.seconds,
        "estimation_s": min(timing), "estimation_5_devices_s": min(p.estimation_s for p in timing5),
        "configurations_5_devices": len(timing5[0].ranked), "predicted": predicted, "measured": measured,
        "infeasible": [{"config": i.config.label, "reason": i.reason} for i in plan.infeasible],
        "decisions": decisions(predicted, measured), "errors": errors(predicted, measured),
        "runs": runs, "failed": failed, "synthetic": True,
    }  # fmt: skip


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

    cells = []
    for model, rate in cells_set:
        cells.append(run_cell(model, rate, STEPS[name], root, report))
        (root / "cells.json").write_text(json.dumps(cells, indent=2, default=str) + "\n")
    figure(cells, out_dir / f"{name}.png")
    body = {"experiment": EXPERIMENT, "data": "synthetic (cifar10-synthetic): timing and power "
            "only", "cells": cells, "totals": totals(cells), "figure": f"{name}.png",
            "seed": {"best_pick": 0.7667, "step_error": [0.0098, 0.1601]}}  # fmt: skip
    return write_result(out_dir / f"{name}.json", body, made_by)


@BENCHES.register("planner-quick")
def planner_quick(results_root: Path | None = None) -> Path:
    """Cluster planner, one cell (tf-cifar10, 100 Mbit): 7 configurations x 4 preferences."""
    return main("planner-quick", QUICK, results_root)


@BENCHES.register("planner")
def planner(results_root: Path | None = None) -> Path:
    """Cluster planner, the seed's evaluation: 5 models x 3 link rates x 7 configurations."""
    return main("planner", FULL, results_root)
