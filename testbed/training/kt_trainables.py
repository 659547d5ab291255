"""The seeded student of a KT spec (sections, adapters, optimizers): one builder for all runs."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras

from testbed.algorithms.kt import KtLoss
from testbed.algorithms.kt_adapter import make_adapter
from testbed.models import ModelDef, build_stages, get_model, resolve_split
from testbed.spec.experiment import Spec
from testbed.spec.kt import student_split
from testbed.training.tfsetup import make_optimizer


def kt_loss(spec: Spec) -> KtLoss:
    kt = spec.algorithm.kt
    return KtLoss(kt.temperature, kt.kd_weight, kt.section_loss, kt.section_weight)


def shape_of(model: keras.Model, which: str) -> tuple[int, ...]:
    """A model's input_shape or output_shape without the batch dimension."""
    return tuple(int(d) for d in getattr(model, which)[1:])


def build_sections(model: ModelDef, split: Sequence[str] | None,
                   input_shapes: Sequence[tuple[int, ...]], width: float) -> list[keras.Sequential]:
    """Each student section on its own input shape (the teacher's section input, in section-kt)."""
    groups = resolve_split(model, split)
    if len(groups) != len(input_shapes):
        raise ValueError(f"student {model.key} has {len(groups)} sections but the teacher "
                         f"{len(input_shapes)}; expected the same number")
    units = {u.name: u for u in model.units}
    sections = []
    for i, (group, shape) in enumerate(zip(groups, input_shapes, strict=True)):
        sub = ModelDef(f"{model.key}[{i}]", "", tuple(units[n] for n in group), ())
        sections.append(build_stages(sub, shape, [], width)[0].model)
    return sections


@dataclass
class KtStudent:
    """What a KT method trains: student sections, their adapters (section-kt), optimizers."""

    sections: list[keras.Sequential]
    optimizers: list[keras.optimizers.Optimizer]
    adapters: list[keras.Sequential] = field(default_factory=list)

    def units(self) -> list[keras.Sequential]:
        """Section i with its adapter as one model (weights: section's, then adapter's); the
        parameter server stores and evaluates these, and chaining them is the assembled student."""
        if not self.adapters:
            return list(self.sections)
        units = [keras.Sequential([keras.Input(shape_of(s, "input_shape")), s, a],
                                  name=f"section{i}_adapted")
                 for i, (s, a) in enumerate(zip(self.sections, self.adapters, strict=False))]
        return [*units, self.sections[-1]]


def build_student(spec: Spec, teacher: Sequence[keras.Model],
                  input_shape: tuple[int, ...]) -> KtStudent:
    """Seed Keras, then build sections, adapters and optimizers (this order fixes the weights)."""
    keras.utils.set_random_seed(spec.training.seed)
    kt, m = spec.algorithm.kt, spec.model
    student, split = get_model(m.name), student_split(kt, m)
    if shape_of(teacher[0], "input_shape") != tuple(input_shape):
        raise ValueError(f"teacher reads {shape_of(teacher[0], 'input_shape')} but the "
                         f"dataset's images are {tuple(input_shape)}")
    if kt.method == "section-kt":
        shapes = [shape_of(t, "input_shape") for t in teacher]
        sections = build_sections(student, split, shapes, m.width)
    else:
        sections = [s.model for s in build_stages(student, input_shape, split, m.width)]
    adapters = []
    if kt.method == "section-kt":
        adapters = [make_adapter(shape_of(s, "output_shape"), shape_of(t, "output_shape"),
                                 f"adapter{i}")
                    for i, (s, t) in enumerate(zip(sections[:-1], teacher[:-1], strict=True))]
    t = spec.training
    return KtStudent(sections, [make_optimizer(t.optimizer, t.lr) for _ in sections], adapters)


def save_teacher(sections: list[keras.Model], path: Path, info: dict[str, Any]) -> None:
    """Write `path` (.keras) and `path`.json atomically (a concurrent reader never sees half)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.keras")
    keras.Sequential(list(sections)).save(tmp)
    os.replace(tmp, path)
    tmp_json = path.with_name(f".{path.stem}.{os.getpid()}.json")
    tmp_json.write_text(json.dumps(info, indent=2) + "\n")
    os.replace(tmp_json, path.with_suffix(".json"))


def load_teacher(path: Path) -> list[keras.Model]:
    """The sections of a saved teacher (safe_mode=True); ValueError unless it is a section stack."""
    model = keras.saving.load_model(path, safe_mode=True, compile=False)
    sections = list(getattr(model, "layers", []))
    if not isinstance(model, keras.Sequential) or not sections or not all(
        isinstance(s, keras.Model) for s in sections
    ):
        kinds = [type(s).__name__ for s in sections]
        raise ValueError(
            f"{path}: expected a keras.Sequential of section models (as the testbed saves "
            f"teachers), got {type(model).__name__} of {kinds}"
        )
    for s in sections:
        s.trainable = False
    return sections
