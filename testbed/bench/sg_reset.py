"""Benchmark `sg-reset`: what a re-split's fresh state costs sg, measured in process.

After a re-split every boundary that changed owner gets a new, zero SG module, and every stage
whose units moved a new optimizer (testbed/runtime/resplit.py). Which of the two makes test
accuracy dip? Four-layer split [fc1, fc2] (the re-split test's new split) trains with sg for
RESET_AT steps, then one of: nothing, the stages' optimizer state zeroed (a restarted Adam),
the SG modules and their optimizers zeroed (fresh modules), both; then STEPS - RESET_AT more.
Same seed, same batches in every cell; accuracy on 1,000 test images every EVAL_EVERY steps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from testbed.bench import BENCHES, bench_dir, command, write_result  # noqa: E402
from testbed.metrics import provenance  # noqa: E402

NAME = "sg-reset"
STEPS, RESET_AT, EVAL_EVERY, BATCH = 480, 200, 20, 32
CELLS = ("none", "optimizers", "sg-modules", "both")


def spec_raw() -> dict[str, Any]:
    return {"name": NAME, "model": {"name": "four-layer", "split_after": ["fc1", "fc2"]},
            "algorithm": {"name": "sg", "sg": {"lr": 3.0e-3, "kernel": 1}},
            "training": {"batch_size": BATCH, "lr": 1.0e-3, "iterations": STEPS,
                         "eval_every": EVAL_EVERY, "eval_samples": 1000, "seed": 3}}  # fmt: skip


def zero_state(optimizer: Any) -> None:
    """An optimizer as if new (step count and moments zero), its learning rate kept."""
    import keras

    lr = getattr(optimizer, "_learning_rate", None)
    for v in optimizer.variables:
        if v is not lr:
            v.assign(keras.ops.zeros_like(v))


def reset(session: Any, cell: str) -> None:
    """Apply cell's reset (SG modules are linear and zero-initialised: zero is fresh)."""
    if cell in ("optimizers", "both"):
        for opt in session.optimizers:
            zero_state(opt)
    if cell in ("sg-modules", "both"):
        for module, opt in zip(session.sgs, session.sg_optimizers, strict=True):
            module.set_weights([np.zeros_like(w) for w in module.get_weights()])
            zero_state(opt)


def run_cell(cell: str) -> list[tuple[int, float]]:
    from testbed.data import load_dataset
    from testbed.spec.load import parse_spec
    from testbed.training.session import Session, fetch_batch

    spec = parse_spec(spec_raw())
    assert spec.algorithm.sg.depth == 0  # a linear module: zero weights are a fresh module
    data = load_dataset("mnist")
    session = Session.build(spec, data)
    step, evaluate = session.compile_step(), session.evaluator()
    rng = np.random.default_rng(0)
    curve = []
    for i in range(1, STEPS + 1):
        step(*fetch_batch(data, rng.integers(0, len(data.y_train), BATCH)))
        if i == RESET_AT:
            reset(session, cell)
        if i % EVAL_EVERY == 0:
            curve.append((i, evaluate()))
    return curve


def summary(curve: list[tuple[int, float]]) -> dict[str, float]:
    """Accuracy at the reset, the lowest after it, and at the end."""
    at = dict(curve)[RESET_AT]
    after = [a for s, a in curve if s > RESET_AT]
    return {"at_reset": at, "lowest_after": min(after), "dip": at - min(after), "final": after[-1]}


def figure(cells: dict[str, dict[str, Any]], out: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name, c in cells.items():
        ax.plot([s for s, _ in c["curve"]], [a for _, a in c["curve"]], marker=".", label=name)
    ax.axvline(RESET_AT, c="gray", ls="--", lw=0.8)
    ax.set_xlabel("step")
    ax.set_ylabel("test accuracy (1,000 images)")
    ax.set_title("sg on four-layer [fc1, fc2]: what is reset at step 200", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


@BENCHES.register(NAME)
def main(results_root: Path | None = None) -> Path:
    """Which fresh state (optimizers, SG modules) makes sg's accuracy dip mid-run."""
    made_by = provenance.start(command(NAME))
    cells = {}
    for cell in CELLS:
        curve = run_cell(cell)
        cells[cell] = {"curve": curve, **summary(curve)}
        print(f"{NAME} {cell}: {summary(curve)}", flush=True)
    out = bench_dir(results_root) / f"{NAME}.json"
    figure(cells, out.with_suffix(".png"))
    body = {"cells": cells, "steps": STEPS, "reset_at": RESET_AT, "batch_size": BATCH,
            "spec": spec_raw()}  # fmt: skip
    return write_result(out, body, made_by)
