"""The full training state of model stages as named numpy arrays, and back.

Per stage i: its weights, its optimizer's variables (step counter, learning rate, slots such as
Adam's moments), and, where the method has one, its SG module or local-loss head and that
module's optimizer:

    stage<i>/weights/<k>   stage<i>/optimizer/<k>   stage<i>/sg/<k>   stage<i>/sg_optimizer/<k>
                                                    stage<i>/head/<k> stage<i>/head_optimizer/<k>

with <k> the variable's position (000, 001, ...): Keras's variable names carry suffixes that
change when a process builds a model twice, positions do not. The same names serve the
in-process checkpoint, each worker's shard and the parameter server's assembled checkpoint,
so every run resumes from a state any other run of the same spec wrote. Restoring checks every
name, dtype and shape and raises StateError naming the first that does not fit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

SAMPLER_KEY = "stage0/sampler"  # the data sampler's position (testbed.data.batches), uint8 JSON


class StateError(ValueError):
    """A saved state that does not fit the model it is restored into."""


@dataclass(frozen=True)
class StageParts:
    """What trains in one stage: its model and optimizer, plus an SG module or a local-loss
    head and its optimizer."""

    model: keras.Model
    optimizer: keras.optimizers.Optimizer
    sg: keras.Model | None = None
    sg_optimizer: keras.optimizers.Optimizer | None = None
    head: keras.Model | None = None
    head_optimizer: keras.optimizers.Optimizer | None = None


def stage_parts(
    ids: Iterable[int],
    models: Sequence[keras.Model],
    optimizers: Sequence[keras.optimizers.Optimizer],
    sgs: Sequence[keras.Model] = (),
    sg_optimizers: Sequence[keras.optimizers.Optimizer] = (),
    heads: Sequence[keras.Model] = (),
    head_optimizers: Sequence[keras.optimizers.Optimizer] = (),
) -> dict[int, StageParts]:
    """The parts of stages `ids` (stage i's SG module is sgs[i], its local-loss head heads[i];
    the last stage has neither)."""

    def at(items: Sequence[Any], i: int) -> Any:
        return items[i] if i < len(items) else None

    return {
        i: StageParts(models[i], optimizers[i], at(sgs, i), at(sg_optimizers, i), at(heads, i),
                      at(head_optimizers, i))  # fmt: skip
        for i in ids
    }


def _groups(i: int, parts: StageParts) -> list[tuple[str, list[Any]]]:
    """(name prefix, variables) of one stage, optimizers built so their slots exist."""
    out = [(f"stage{i}/weights", list(parts.model.weights)),
           (f"stage{i}/optimizer", _built(parts.optimizer, parts.model))]  # fmt: skip
    for name, module, optimizer in (("sg", parts.sg, parts.sg_optimizer),
                                    ("head", parts.head, parts.head_optimizer)):
        if module is not None and optimizer is not None:
            out += [(f"stage{i}/{name}", list(module.weights)),
                    (f"stage{i}/{name}_optimizer", _built(optimizer, module))]  # fmt: skip
    return out


def _built(optimizer: keras.optimizers.Optimizer, model: keras.Model) -> list[Any]:
    if not optimizer.built:
        optimizer.build(model.trainable_variables)
    return list(optimizer.variables)


def _named(parts: Mapping[int, StageParts]) -> dict[str, Any]:
    return {
        f"{prefix}/{k:03d}": v
        for i, p in sorted(parts.items())
        for prefix, variables in _groups(i, p)
        for k, v in enumerate(variables)
    }


def capture(parts: Mapping[int, StageParts]) -> dict[str, np.ndarray]:
    """Copies of every variable of the given stages, by name."""
    return {name: np.array(v.numpy(), copy=True) for name, v in _named(parts).items()}


def specs(parts: Mapping[int, StageParts]) -> dict[str, tuple[str, tuple[int, ...]]]:
    """name -> (dtype, shape) of every variable `capture` returns."""
    return {
        name: (str(np.dtype(v.dtype)), tuple(int(d) for d in v.shape))
        for name, v in _named(parts).items()
    }


def restore(parts: Mapping[int, StageParts], arrays: Mapping[str, np.ndarray]) -> None:
    """Assign the saved arrays to the stages' variables; every one must be present and fit."""
    variables = _named(parts)
    missing = sorted(set(variables) - set(arrays))
    if missing:
        raise StateError(f"saved state lacks {missing[:3]} ({len(missing)} in all); "
                         "expected the state of the same spec's stages")
    for name, var in variables.items():
        arr = np.asarray(arrays[name])
        want = (str(np.dtype(var.dtype)), tuple(int(d) for d in var.shape))
        if (str(arr.dtype), arr.shape) != want:
            raise StateError(f"{name}: got {arr.dtype} {arr.shape}, expected {want[0]} {want[1]}")
    for name, var in variables.items():
        var.assign(arrays[name])


def stage_of(name: str) -> int:
    """The stage index a state name belongs to ('stage3/weights/000' -> 3)."""
    head = name.split("/", 1)[0]
    if not head.startswith("stage") or not head[5:].isdigit():
        raise StateError(f"state name {name!r}: expected 'stage<i>/...'")
    return int(head[5:])
