"""Benchmark `wire`: what compressed stage messages (job.wire) and fewer SG targets
(algorithm.sg.target_every) save in bytes per step, counted on the wire, and cost in accuracy.

Bytes: four-layer in the seed paper's 4 stages (conv1+pool | fc1 | fc2 | logits), sg and
bp-sync across worker processes on loopback, STEPS steps of batch 128 per setting. Every
worker counts each message it sends, framed as on the wire (gRPC prefix and HTTP/2 frame
headers), per peer: forward is activations + labels downstream, backward the gradients (BP)
or SG targets (SG) upstream. The bytes are the same on any link and machine, so one short
run per setting measures them exactly.

Accuracy: the accuracy bench's four-layer cells (bench scale: 3000 steps of 128, in process,
where the same round trip is applied between stages as on the wire) for fp32, int8
activations + fp16 gradients, and SG with a target for one batch in 4, each over SEEDS seeds
(the seed sets the weights and the batch order; fp32 and compressed share them).
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from testbed.bench import BENCHES, bench_dir, command, write_result
from testbed.bench.accuracy import INT8_FP16, METHODS, run_cell

STEPS = 30
SEEDS = (0, 1, 2)
MODEL = "four-layer"
_WIRE = "job.wire"
# label -> (modes, dotted-path overrides)
SETTINGS: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "fp32": (("sg", "bp-sync"), {}),
    "fp16": (("sg", "bp-sync"), {f"{_WIRE}.activations": "fp16", f"{_WIRE}.gradients": "fp16"}),
    "int8/fp16": (("sg", "bp-sync"), INT8_FP16),  # int8 per channel activations, fp16 grads
    "int8 per-tensor/fp16": (("sg", "bp-sync"), {**INT8_FP16, f"{_WIRE}.scale": "per-tensor"}),
    "int8/int8": (("sg", "bp-sync"), {**INT8_FP16, f"{_WIRE}.gradients": "int8"}),
    "int8/fp16 top-10%": (("sg", "bp-sync"), {**INT8_FP16, f"{_WIRE}.topk": 0.1}),
    "targets 1/2": (("sg",), {"algorithm.sg.target_every": 2}),
    "targets 1/4": (("sg",), {"algorithm.sg.target_every": 4}),
    "int8/fp16, targets 1/4": (("sg",), {**INT8_FP16, "algorithm.sg.target_every": 4}),
}
ACCURACY = ("bp", "bp int8/fp16", "sg", "sg int8/fp16", "sg targets 1/4")  # accuracy METHODS
TARGETS = {"total": 2.6, "forward": 3.9}  # int8/fp16 bytes per step: at least this much fewer


def link_bytes(workers: dict[str, Any], steps: int) -> dict[str, Any]:
    """Framed bytes per step sent forward and backward over each link (stage i <-> i+1)."""
    stages = sorted((n for n in workers if n.startswith("stage")), key=lambda n: int(n[5:]))
    links = []
    for up, down in zip(stages, stages[1:], strict=False):
        fwd = workers[up]["peers"].get("sent:downstream", {})
        bwd = workers[down]["peers"].get("sent:upstream", {})
        links.append({
            "link": f"{up}-{down}", "forward": fwd.get("wire_bytes", 0) / steps,
            "backward": bwd.get("wire_bytes", 0) / steps,
            "forward_messages": fwd.get("messages", 0), "backward_messages": bwd.get("messages", 0),
        })
    forward = sum(li["forward"] for li in links)
    backward = sum(li["backward"] for li in links)
    return {"links": links, "forward": forward, "backward": backward, "total": forward + backward}


def bytes_cell(mode: str, overrides: dict[str, Any], results_root: Path | None) -> dict[str, Any]:
    """One short distributed run of four-layer in `mode`: bytes per step on every link."""
    from testbed.controller.experiment import run_experiment
    from testbed.metrics.run_dir import read_summary
    from testbed.spec.load import load_spec

    algo = "sg" if mode == "sg" else "bp"
    spec = load_spec(f"{MODEL}-{algo}", "smoke", {
        **overrides, "job.mode": mode, "training.iterations": STEPS, "training.eval_every": STEPS,
        "training.eval_samples": 1000, "training.threads": 1})
    run = run_experiment(spec, results_root, progress=False)
    summary = read_summary(run.path)
    if summary["status"] != "completed":
        raise RuntimeError(f"{run.path}: {mode} {overrides} ended {summary['status']}")
    return {"run": str(run.path), **link_bytes(summary["workers"], STEPS)}


def ratios(cells: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    """fp32 bytes / the setting's, forward, backward and total (pure)."""
    base = cells["fp32"]
    return {label: {k: base[k] / c[k] if c[k] else float("inf")
                    for k in ("forward", "backward", "total")} for label, c in cells.items()}


def accuracy_cells(results_root: Path | None, seeds: tuple[int, ...] = SEEDS) -> dict[str, Any]:
    """Final test accuracy of every ACCURACY method per seed, and its cost against its fp32
    method with the same seed (mean over seeds)."""
    out: dict[str, Any] = {}
    for method in ACCURACY:
        runs = [run_cell(MODEL, method, results_root, {"training.seed": s}) for s in seeds]
        out[method] = {"final": [r["final"] for r in runs], "runs": [r["run"] for r in runs],
                       "mean": statistics.mean(r["final"] for r in runs)}
    for method, cell in out.items():
        base = METHODS[method][0]
        if base != method:
            costs = [b - f for b, f in zip(out[base]["final"], cell["final"], strict=True)]
            cell.update(cost=costs, mean_cost=statistics.mean(costs), base=base)
    return out


def figure(cells: dict[str, dict[str, dict[str, Any]]], acc: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.2),
                                      gridspec_kw={"width_ratios": [3, 2]})
    sg = cells["sg"]
    labels = list(sg)
    fwd = [sg[label]["forward"] / 1e6 for label in labels]
    bwd = [sg[label]["backward"] / 1e6 for label in labels]
    left.bar(labels, fwd, color="#2f6db3", label="forward: activations + labels")
    left.bar(labels, bwd, bottom=fwd, color="#e08a2c", label="backward: SG targets")
    for i, label in enumerate(labels):
        left.text(i, fwd[i] + bwd[i], f"{sg['fp32']['total'] / sg[label]['total']:.2f}x",
                  ha="center", va="bottom", fontsize=7)
    left.set_ylabel("MB per step (framed, all links)")
    left.set_title("four-layer sg, 4 stages, batch 128: bytes per step (x = fewer than fp32)",
                   fontsize=9)
    left.tick_params(axis="x", labelrotation=30, labelsize=7)
    left.legend(fontsize=7)
    names = list(acc)
    for i, name in enumerate(names):
        right.scatter([i] * len(acc[name]["final"]), acc[name]["final"], c="k", s=12, zorder=3)
        right.bar(i, acc[name]["mean"], color="#2f6db3" if name.startswith("bp") else "#7a3")
    right.set_xticks(range(len(names)), names, rotation=30, fontsize=7)
    low = min(v for a in acc.values() for v in a["final"])
    right.set_ylim(low - 0.01, min(1.0, max(a["mean"] for a in acc.values()) + 0.005))
    right.set_ylabel("test accuracy (MNIST)")
    right.set_title(f"in process, 3000 steps x 128, {len(SEEDS)} seeds (dots), mean (bars)",
                    fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(results_root: Path | None = None) -> Path:
    """Bytes per step of compressed stage messages and fewer SG targets; accuracy cost."""
    from testbed.metrics import provenance

    made_by = provenance.start(command("wire"))
    cells = {mode: {label: bytes_cell(mode, over, results_root)
                    for label, (modes, over) in SETTINGS.items() if mode in modes}
             for mode in ("sg", "bp-sync")}
    fewer = {mode: ratios(c) for mode, c in cells.items()}
    acc = accuracy_cells(results_root)
    met = {
        "bytes": {mode: {k: fewer[mode]["int8/fp16"][k] >= t for k, t in TARGETS.items()}
                  for mode in fewer},
        "accuracy": {m: acc[m]["mean_cost"] <= 0.003 for m in ("bp int8/fp16", "sg int8/fp16")},
    }
    body = {"model": MODEL, "steps": STEPS, "batch_size": 128, "settings": {
        label: {"modes": list(modes), "overrides": over} for label, (modes, over) in SETTINGS.items()},
        "bytes_per_step": cells, "fewer_than_fp32": fewer, "accuracy": acc, "seeds": list(SEEDS),
        "targets": {"bytes": TARGETS, "accuracy_cost": 0.003}, "met": met}
    out = bench_dir(results_root)
    write_result(out / "wire.json", body, made_by)
    figure(cells, acc, out / "wire.png")
    for mode, by_label in fewer.items():
        for label, r in by_label.items():
            c = cells[mode][label]
            print(f"{mode:8} {label:24} {c['total'] / 1e6:7.3f} MB/step  fewer than fp32: total "
                  f"{r['total']:.2f}x  forward {r['forward']:.2f}x  backward {r['backward']:.2f}x")
    for name, a in acc.items():
        extra = f"  cost vs {a['base']} {a['mean_cost'] * 100:+.2f} pt" if "base" in a else ""
        print(f"{name:16} accuracy {a['mean']:.4f} {a['final']}{extra}")
    return out / "wire.json"


BENCHES.register("wire")(main)
