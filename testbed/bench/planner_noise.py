"""Benchmark `planner-noise` (issue 14): how repeatable the `planner` bench's ground truth is on
this host, and so what any predictor could score against it.

The quick cell (tf-cifar10, 100 Mbit) is profiled once and planned; then all 7 configurations are
run for the bench's S = 30 steps (`planner-noise-100`: 100), R = 3 times, the repetitions
interleaved (every configuration once, then again) so that drift of the host falls on all of
them alike. Each repetition is scored twice:
against the planner's one plan, and against the *oracle*, which predicts each configuration by
the mean of its other repetitions. The oracle knows everything the truth can teach short of the
repetition it is scored on, so its best pick and errors are the ceiling that this host's
run-to-run spread leaves any predictor at S steps (a pessimistic one: a mean of R - 1 runs is
itself noisy, by a factor of about sqrt(1 + 1/(R - 1)) in the errors).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from testbed.bench import BENCHES, bench_dir, command, write_result
from testbed.bench.planner import (
    EXPERIMENT,
    QUICK,
    STEPS,
    bare_spec,
    bench_spec,
    decisions,
    errors,
    rate_plan,
    truths,
)

REPEATS = 3
METRICS = ("time", "power", "energy", "edp", "time_s", "step_s", "power_w", "energy_j")

Measured = Mapping[str, Mapping[str, float]]  # configuration -> metric -> value


def oracle(reps: Sequence[Measured], r: int) -> dict[str, dict[str, float]]:
    """Each configuration's metrics as the mean of the repetitions other than r. Pure."""
    others = [m for i, m in enumerate(reps) if i != r]
    common = set.intersection(*(set(m) for m in others))
    return {c: {k: statistics.fmean(m[c][k] for m in others) for k in METRICS}
            for c in sorted(common)}  # fmt: skip


def spread(reps: Sequence[Measured]) -> dict[str, dict[str, float]]:
    """Per configuration and metric, (max - min) / mean over the repetitions. Pure."""
    common = set.intersection(*(set(m) for m in reps))
    out = {}
    for c in sorted(common):
        out[c] = {}
        for k in ("step_s", "time_s", "energy_j", "edp"):
            xs = [m[c][k] for m in reps]
            out[c][k] = (max(xs) - min(xs)) / statistics.fmean(xs)
    return out


def score(predicted_per_rep: Sequence[Measured], reps: Sequence[Measured]) -> dict[str, Any]:
    """A predictor's decisions and errors against each repetition, and their summary. Pure."""
    per_rep = []
    for pred, meas in zip(predicted_per_rep, reps, strict=True):
        shared = {c: meas[c] for c in meas if c in pred}
        per_rep.append({"decisions": decisions(pred, shared), "errors": errors(pred, shared)})
    ds = [d for r in per_rep for d in r["decisions"]]
    return {
        "best_pick": sum(d["correct"] for d in ds) / len(ds), "decisions": len(ds),
        "median_regret": statistics.median(d["regret"] for d in ds),
        "worst_regret": max(d["regret"] for d in ds),
        "step_error_median": statistics.median(r["errors"]["step_s"]["median"] for r in per_rep),
        "step_error_worst": max(r["errors"]["step_s"]["worst"] for r in per_rep),
        "energy_error_median": statistics.median(r["errors"]["energy_j"]["median"]
                                                 for r in per_rep),
        "per_repetition": per_rep,
    }  # fmt: skip


def figure(doc: Mapping[str, Any], path: Path) -> None:
    """Per configuration: each repetition's measured step and time, and the planner's."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    reps = [c["measured"] for c in doc["repetitions"]]
    predicted = doc["repetitions"][0]["predicted"]
    configs = sorted(doc["spread"], key=lambda c: predicted[c]["time_s"])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    for ax, metric, unit in ((axes[0], "step_s", "s per step"), (axes[1], "time_s", "s")):
        for r, meas in enumerate(reps):
            ax.scatter(range(len(configs)), [meas[c][metric] for c in configs], marker="o",
                       color="#4477aa", alpha=0.6, label="measured" if r == 0 else None)
        ax.scatter(range(len(configs)), [predicted[c][metric] for c in configs], marker="x",
                   color="#cc3311", s=60, label="planner")  # fmt: skip
        ax.set_xticks(range(len(configs)), configs, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel(f"{metric.split('_')[0]} ({unit})")
        ax.set_ylim(bottom=0)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"planner ground truth repeated {doc['repeats']}x: {doc['model']} "
                 f"{doc['rate']}, {doc['steps']} steps (synthetic data)")  # fmt: skip
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(name: str, steps: int, results_root: Path | None, repeats: int = REPEATS) -> Path:
    """The quick cell profiled once, its 7 configurations run `repeats` times for `steps`."""
    from testbed.metrics import provenance
    from testbed.planner.profiling import profile_cluster

    made_by = provenance.start(command(name))
    out_dir = bench_dir(results_root)
    root = out_dir / name
    root.mkdir(parents=True, exist_ok=True)
    model, rate = QUICK[0]
    spec = bench_spec(model, rate, steps)
    assert spec.planner is not None
    devices = profile_cluster(bare_spec(spec), spec.planner.profile, root / "profiling", print)
    _, plan, _ = rate_plan(spec, devices, steps, print)
    cells = [truths(spec, plan, steps, root / f"rep{r}", rate, {}, print) for r in range(repeats)]
    reps = [c["measured"] for c in cells]
    body = {
        "experiment": EXPERIMENT, "model": model, "rate": rate, "steps": steps,
        "repeats": repeats, "data": "synthetic (cifar10-synthetic): timing and power only",
        "spread": spread(reps),
        "planner": score([c["predicted"] for c in cells], reps),
        "oracle": score([oracle(reps, r) for r in range(repeats)], reps),
        "repetitions": cells, "figure": f"{name}.png",
    }  # fmt: skip
    figure(body, out_dir / f"{name}.png")
    return write_result(out_dir / f"{name}.json", body, made_by)


@BENCHES.register("planner-noise")
def planner_noise(results_root: Path | None = None) -> Path:
    """The planner bench's ground truth repeated: its spread and the oracle's ceiling."""
    return main("planner-noise", STEPS["planner-quick"], results_root)


@BENCHES.register("planner-noise-100")
def planner_noise_100(results_root: Path | None = None) -> Path:
    """planner-noise at S = 100 steps: does a longer ground truth repeat better?"""
    return main("planner-noise-100", 100, results_root)
