"""Small specs that tests and benchmarks share (tiny budgets, real models)."""

from __future__ import annotations

from typing import Any


def kt_sections_raw(mode: str = "kt-sections", **over: Any) -> dict[str, Any]:
    """The MNIST KT pair cut into 2 sections (after block2), tiny budgets; placed on two devices
    (edge0, edge1) in kt-sections mode."""
    raw: dict[str, Any] = {
        "name": f"ktd-{mode}",
        "model": {"name": "mnist-student", "split_after": ["block2"]},
        "algorithm": {"name": "kt", "kt": {
            "method": "section-kt", "pair": "mnist", "teacher_split_after": ["block2"],
            "teacher_iterations": 40, "teacher_lr": 1.0e-3}},
        "training": {"batch_size": 32, "lr": 3.0e-3, "iterations": 40, "eval_every": 20,
                     "log_every": 5, "eval_samples": 500, "threads": 1},
        "job": {"mode": mode},
    }
    if mode == "kt-sections":
        raw["placement"] = {"0": "edge0", "1": "edge1"}
    raw.update(over)
    return raw


def stage_spec(mode: str, iterations: int = 4, split: tuple[str, ...] = ("conv1",),
               **over: Any) -> dict[str, Any]:
    """Four-layer at quarter width on MNIST-shaped input, split after `split`, batch 8, SGD:
    small enough that a worker loop runs a few steps in about a second."""
    algo = {"sg": "sg", "local": "local"}.get(mode, "bp")
    raw: dict[str, Any] = {
        "name": f"loop-{mode}",
        "model": {"name": "four-layer", "split_after": list(split), "width": 0.25},
        "algorithm": {"name": algo, "sg": {"lr": 1.0e-2, "depth": 0}},
        "training": {"batch_size": 8, "optimizer": "sgd", "lr": 0.05, "iterations": iterations,
                     "eval_every": iterations, "log_every": 1},
        "job": {"mode": mode},
    }
    for key, value in over.items():
        raw[key] = {**raw.get(key, {}), **value}
    return raw
