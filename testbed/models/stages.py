"""Turn a model definition and a split into Keras stages (one `keras.Sequential` per stage)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import keras

from testbed.models.zoo import LayerSpec, ModelDef


@dataclass
class Stage:
    """A contiguous group of units; `model` maps the stage input to its output (logits for the last)."""

    index: int
    units: tuple[str, ...]
    model: keras.Sequential
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]

    @property
    def variables(self) -> list:
        return list(self.model.trainable_variables)


def resolve_split(model: ModelDef, split_after: Sequence[str] | None) -> list[list[str]]:
    """Group the model's units into stages that end after each named split point, in order.

    A split point is a unit (`block1_conv1`: inside a block) or a block (`block1`: after it)."""
    names, points = model.unit_names(), model.split_points()
    split = list(model.default_split if split_after is None else split_after)
    unknown = [s for s in split if s not in points]
    if unknown:
        raise ValueError(
            f"split point {unknown[0]!r} is not a split point of {model.key}; expected unit or "
            f"block names in model order, from {list(points)}"
        )
    positions = [points[s] for s in split]
    if positions != sorted(set(positions)):
        raise ValueError(
            f"split points {split} must be distinct and in model order (units {names[:-1]})"
        )
    return groups_of(names, positions)


def groups_of(names: Sequence[str], ends: Sequence[int]) -> list[list[str]]:
    """Consecutive groups of `names`, each ending at one of `ends` (indices), then the rest."""
    groups, start = [], 0
    for pos in [*ends, len(names) - 1]:
        groups.append(list(names[start : pos + 1]))
        start = pos + 1
    return groups


def _layer(spec: LayerSpec, width: float) -> keras.layers.Layer:
    units = max(1, round(spec.units * width)) if spec.scalable else spec.units
    if spec.kind == "conv":
        return keras.layers.Conv2D(
            units, spec.kernel, padding="same", activation=spec.activation,
            kernel_initializer="he_normal",
        )
    if spec.kind == "pool":
        return keras.layers.MaxPooling2D(2, padding="same")
    if spec.kind == "flatten":
        return keras.layers.Flatten()
    if spec.kind == "dense":
        init = "he_normal" if spec.activation == "relu" else "glorot_uniform"
        return keras.layers.Dense(units, activation=spec.activation, kernel_initializer=init)
    raise ValueError(f"unknown layer kind {spec.kind!r}; expected conv, pool, flatten or dense")


def build_stages(
    model: ModelDef,
    input_shape: tuple[int, ...],
    split_after: Sequence[str] | None = None,
    width: float = 1.0,
) -> list[Stage]:
    """Build one Keras model per stage; seed Keras beforehand for reproducible weights."""
    units = {u.name: u for u in model.units}
    stages, shape = [], tuple(input_shape)
    for i, group in enumerate(resolve_split(model, split_after)):
        layers = [_layer(spec, width) for name in group for spec in units[name].layers]
        seq = keras.Sequential([keras.Input(shape), *layers], name=f"stage{i}")
        out = tuple(int(d) for d in seq.output_shape[1:])
        stages.append(Stage(i, tuple(group), seq, shape, out))
        shape = out
    return stages
