"""Benchmark `devices` (issue 14): does each emulated device class train at its stated speed?

The seed's platforms (`desktop`, `jetson-tx2`, `jetson-tx1`; `emulation/profiles.py`) stand on
this host as a CPU quota of speed x REFERENCE_CPUS, one intra-op thread and a memory cap. This
benchmark brings up one cluster of the three classes (local backend, root: their cgroups and
namespaces, no links) and starts one timing process inside each device, with the device's thread
limits. Model by model, the classes take turns (desktop, TX2, TX1, so drift of the host hits
them alike): each builds the whole model, runs `WARMUP` untimed steps (tracing included), then
`BLOCKS` blocks of `STEPS` training steps (Adam, batch 32, CIFAR-shaped synthetic inputs), timed
by wall clock and the process's CPU time. A class's step time is its blocks' total wall time per
step; its achieved speed is the desktop's step time over its own, judged against the stated
speed (`Profile.speed`, sourced in docs/devices.md) within +-10%.

`python -m testbed.bench.devices` (no arguments) is the timing process; it reads one JSON
request per line on stdin and answers one JSON line per request on stdout.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from testbed.bench import BENCHES, bench_dir, command, write_result

CLASSES = ("desktop", "jetson-tx2", "jetson-tx1")
REFERENCE = "desktop"
MODELS = ("alexnet-cifar", "tf-cifar10", "nin-cifar", "resnet20", "squeezenet-cifar")
BATCH, WARMUP, BLOCKS, STEPS = 32, 3, 3, 10
TOLERANCE = 0.10  # achieved / stated speed within +-10% (issue 14)


# -- pure: from block times to ratios -------------------------------------------------------
def step_time(block_s: Sequence[float], steps: int) -> float:
    """Seconds per step over all blocks (total time / total steps: a CPU quota throttles in
    periods, so only the whole window's mean is the device's rate)."""
    return sum(block_s) / (steps * len(block_s))


def compare(
    blocks: Mapping[str, Mapping[str, Sequence[float]]],
    stated: Mapping[str, float],
    steps: int,
    reference: str = REFERENCE,
    tolerance: float = TOLERANCE,
) -> dict[str, Any]:
    """Achieved vs stated speed per model and class. Pure.

    blocks: model -> class -> wall seconds of each block of `steps` steps; stated: class ->
    speed relative to `reference`. Per cell: step time, achieved speed (the reference's step
    time over the class's), the range over block pairs, error = achieved / stated - 1 and whether
    it is within `tolerance`; per class: the median achieved speed over the models and the worst
    error; `target_met` when every cell is within."""
    cells: dict[str, dict[str, Any]] = {}
    for model, per_class in blocks.items():
        ref = per_class[reference]
        cells[model] = {}
        for cls, times in per_class.items():
            achieved = step_time(ref, steps) / step_time(times, steps)
            pairs = [r / t for r, t in zip(ref, times, strict=True)]
            error = achieved / stated[cls] - 1
            cells[model][cls] = {
                "step_s": step_time(times, steps), "achieved": achieved, "stated": stated[cls],
                "error": error, "within": abs(error) <= tolerance,
                "block_range": [min(pairs), max(pairs)],
            }  # fmt: skip
    classes = [c for c in stated if any(c in cells[m] for m in cells)]
    per_class = {}
    for cls in classes:
        got = [cells[m][cls] for m in cells if cls in cells[m]]
        per_class[cls] = {
            "stated": stated[cls],
            "achieved_median": statistics.median(c["achieved"] for c in got),
            "worst_error": max((c["error"] for c in got), key=abs),
            "within": all(c["within"] for c in got),
        }  # fmt: skip
    return {"cells": cells, "classes": per_class, "tolerance": tolerance,
            "target_met": all(c["within"] for c in per_class.values())}  # fmt: skip


# -- inside a device: the timing process ----------------------------------------------------
def _serve() -> int:
    """Answer timing requests read from stdin (see the module docstring) until EOF."""
    import os

    from testbed.training.tfsetup import configure_threads

    configure_threads(int(os.environ.get("TF_NUM_INTRAOP_THREADS", "0")) or None)
    import tensorflow as tf

    print(json.dumps({"ready": True,
                      "threads": tf.config.threading.get_intra_op_parallelism_threads()}),
          flush=True)  # fmt: skip
    for line in sys.stdin:
        req = json.loads(line)
        print(json.dumps(time_model(req["model"], req["warmup"], req["blocks"], req["steps"])),
              flush=True)  # fmt: skip
    return 0


def time_model(model: str, warmup: int, blocks: int, steps: int) -> dict[str, Any]:
    """Build `model` whole and time its training steps (batch BATCH, Adam) in this process."""
    import keras
    import numpy as np
    import tensorflow as tf

    from testbed.algorithms.bp import last_stage_step
    from testbed.data.synthetic import CLASSES as N_CLASSES
    from testbed.data.synthetic import SHAPE
    from testbed.models import build_stages, get_model

    started = time.perf_counter()
    keras.utils.set_random_seed(0)
    (stage,) = build_stages(get_model(model), SHAPE, [])
    opt = keras.optimizers.Adam(1e-3)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.uniform(0, 1, (BATCH, *SHAPE)).astype("float32"))
    y = tf.constant(rng.integers(0, N_CLASSES, BATCH).astype("int32"))
    step = tf.function(lambda: last_stage_step(stage.model, opt, x, y)[0])
    for _ in range(warmup):
        step().numpy()
    ready = time.perf_counter() - started
    wall, cpu = [], []
    for _ in range(blocks):
        t, c = time.perf_counter(), time.process_time()
        for _ in range(steps):
            step().numpy()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return {"model": model, "block_s": wall, "block_cpu_s": cpu, "build_warmup_s": ready,
            "params": int(stage.model.count_params())}  # fmt: skip


# -- the benchmark: a cluster of the classes, one timing process in each -------------------
class _Timer:
    """The timing process inside one device: send a request, read its answer."""

    def __init__(self, handle: Any, device: str) -> None:
        import subprocess

        from testbed.runtime.workdir import WORKER_ENV

        self.device = device
        self.proc = handle.spawn(device, [sys.executable, "-m", __name__],
                                 env=dict(WORKER_ENV),
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
        self.hello = self._read()

    def _read(self) -> dict[str, Any]:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(
                f"the timing process on {self.device!r} exited "
                f"({self.proc.poll()}); its stderr is above"
            )
        return dict(json.loads(line))

    def ask(self, model: str) -> dict[str, Any]:
        req = {"model": model, "warmup": WARMUP, "blocks": BLOCKS, "steps": STEPS}
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        return self._read()


def measure(models: Sequence[str], report: Any = print) -> dict[str, Any]:
    """Bring the classes up as one cluster and time every model on every class, in turns."""
    import os

    from testbed.emulation.config import ClusterSpec
    from testbed.emulation.fidelity import FULL
    from testbed.emulation.local.backend import LocalBackend

    cluster = ClusterSpec.model_validate({"devices": [{"name": c, "profile": c} for c in CLASSES]})
    with LocalBackend(f"bench-devices-{os.getpid()}").up(cluster) as handle:
        if handle.fidelity_level != FULL:
            raise RuntimeError(
                f"the devices benchmark needs the capped devices of a root run; "
                f"this one is {handle.fidelity_level!r}"
            )
        resolved = {c: handle.device(c) for c in CLASSES}
        timers = {c: _Timer(handle, c) for c in CLASSES}
        raw: dict[str, dict[str, Any]] = {}
        for model in models:
            raw[model] = {}
            for cls in CLASSES:
                raw[model][cls] = timers[cls].ask(model)
                r = raw[model][cls]
                report(f"{model} on {cls}: {step_time(r['block_s'], STEPS) * 1e3:.0f} ms/step")
        for t in timers.values():
            t.proc.stdin.close()
            t.proc.wait(timeout=60)
    devices = {c: {"cpus": d.cpus, "memory_bytes": d.memory_bytes, "threads": d.threads,
                   "threads_seen": timers[c].hello["threads"]} for c, d in resolved.items()}  # fmt: skip
    return {"raw": raw, "devices": devices, "fidelity_level": FULL}


def cpu_share(raw: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> dict[str, dict[str, float]]:
    """Per model and class: the CPU the timing process got per second of its blocks. Pure."""
    return {m: {c: sum(r["block_cpu_s"]) / sum(r["block_s"]) for c, r in per.items()}
            for m, per in raw.items()}  # fmt: skip


def figure(result: Mapping[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells, models = result["cells"], list(result["cells"])
    classes = [c for c in CLASSES if c != REFERENCE]
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    width = 0.8 / len(classes)
    for i, cls in enumerate(classes):
        xs = [j + (i - (len(classes) - 1) / 2) * width for j in range(len(models))]
        got = [cells[m][cls]["achieved"] for m in models]
        lo = [g - cells[m][cls]["block_range"][0] for g, m in zip(got, models, strict=True)]
        hi = [cells[m][cls]["block_range"][1] - g for g, m in zip(got, models, strict=True)]
        bars = ax.bar(xs, got, width, yerr=[lo, hi], capsize=2, label=f"{cls} achieved")
        stated = result["classes"][cls]["stated"]
        color = bars.patches[0].get_facecolor()
        ax.axhline(stated, color=color, lw=1, ls="--", label=f"{cls} stated {stated:.3f}")
        ax.axhspan(stated * (1 - TOLERANCE), stated * (1 + TOLERANCE), color=color, alpha=0.12)
    ax.set_xticks(range(len(models)), models, fontsize=8)
    ax.set_ylabel(f"training speed / {REFERENCE}")
    ax.set_title(
        "device classes: achieved vs stated speed (band: +-10%; bars: block range)", fontsize=9
    )
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


@BENCHES.register("devices")
def main(results_root: Path | None = None, models: Sequence[str] = MODELS) -> Path:
    """Device classes (desktop, Jetson TX2, TX1): achieved vs stated training speed ratio."""
    from testbed.emulation.profiles import SPEED_SOURCE, get_profile
    from testbed.metrics import provenance

    made_by = provenance.start(command("devices"))
    measured = measure(models)
    stated = {c: float(get_profile(c).speed or 1.0) for c in CLASSES}
    blocks = {m: {c: r["block_s"] for c, r in per.items()} for m, per in measured["raw"].items()}
    result = compare(blocks, stated, STEPS)
    out_dir = bench_dir(results_root)
    figure(result, out_dir / "devices.png")
    body = {
        "setup": {"classes": list(CLASSES), "reference": REFERENCE, "models": list(models),
                  "batch": BATCH, "optimizer": "adam", "warmup_steps": WARMUP, "blocks": BLOCKS,
                  "steps_per_block": STEPS, "data": "synthetic CIFAR-shaped inputs (timing only)",
                  "backend": "local", "fidelity_level": measured["fidelity_level"],
                  "speed_source": SPEED_SOURCE},
        "devices": measured["devices"], **result, "cpu_share": cpu_share(measured["raw"]),
        "raw": measured["raw"], "figure": "devices.png",
    }  # fmt: skip
    return write_result(out_dir / "devices.json", body, made_by)


if __name__ == "__main__":
    sys.exit(_serve())
