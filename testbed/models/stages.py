"""Turn a model definition and a split into Keras stages (one `keras.Sequential` per stage)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import keras

from testbed.models.zoo import LayerSpec, ModelDef, groups_of, resolve_split  # noqa: F401  (re-exported)


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
