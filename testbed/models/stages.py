"""Turn a model definition and a split into Keras stages (one `keras.Sequential` per stage)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import keras

from testbed.models.layers import Fire, LocalResponseNorm, ResidualBlock
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
    units = _scaled(spec.units, spec, width)
    try:
        make = _MAKERS[spec.kind]
    except KeyError:
        raise ValueError(
            f"unknown layer kind {spec.kind!r}; expected one of {', '.join(sorted(_MAKERS))}"
        ) from None
    return make(spec, units, width)


def _scaled(units: int, spec: LayerSpec, width: float) -> int:
    return max(1, round(units * width)) if spec.scalable else units


def _conv(spec: LayerSpec, units: int, width: float) -> keras.layers.Layer:
    conv = keras.layers.Conv2D(
        units, spec.kernel, strides=spec.stride or 1, padding="same",
        activation=None if spec.norm else spec.activation, use_bias=not spec.norm,
        kernel_initializer="he_normal",
    )  # fmt: skip
    if not spec.norm:
        return conv
    after = [keras.layers.Activation(spec.activation)] if spec.activation else []
    return keras.Sequential([conv, keras.layers.BatchNormalization(), *after])


def _dense(spec: LayerSpec, units: int, width: float) -> keras.layers.Layer:
    init = "he_normal" if spec.activation == "relu" else "glorot_uniform"
    return keras.layers.Dense(units, activation=spec.activation, kernel_initializer=init)


def _pool(kind: type[keras.layers.Layer]) -> Any:
    return lambda spec, units, width: kind(spec.size, spec.stride or spec.size, padding="same")


_MAKERS: dict[str, Any] = {
    "conv": _conv,
    "dense": _dense,
    "pool": _pool(keras.layers.MaxPooling2D),
    "avgpool": _pool(keras.layers.AveragePooling2D),
    "gap": lambda spec, units, width: keras.layers.GlobalAveragePooling2D(),
    "flatten": lambda spec, units, width: keras.layers.Flatten(),
    "lrn": lambda spec, units, width: LocalResponseNorm(),
    "residual": lambda spec, units, width: ResidualBlock(units, spec.stride or 1),
    "fire": lambda spec, units, width: Fire(units, _scaled(spec.expand, spec, width)),
}


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
