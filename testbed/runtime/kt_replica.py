"""A KT worker's model copy: the saved teacher (inference only) and the seeded student sections."""

from __future__ import annotations

from dataclasses import dataclass

import keras

from testbed.data import get_spec
from testbed.models import Stage
from testbed.runtime.wire.tensors import TensorSpec
from testbed.spec.experiment import Spec
from testbed.training.kt_trainables import KtStudent, build_student, load_teacher, shape_of


@dataclass
class KtParts:
    """What kt-sections workers use besides the Replica's stages: teacher and student parts."""

    teacher: list[keras.Model]
    student: KtStudent


def teacher_of(spec: Spec) -> list[keras.Model]:
    """The teacher's sections from algorithm.kt.teacher (a .keras file the controller wrote)."""
    path = spec.algorithm.kt.saved_teacher()
    if path is None:
        raise ValueError(
            "job.mode 'kt-sections': workers load the teacher from algorithm.kt.teacher; expected "
            f"a saved .keras file, got {spec.algorithm.kt.teacher!r} (the controller sets it)"
        )
    return load_teacher(path)


def kt_stages(student: KtStudent) -> list[Stage]:
    """One Replica stage per student section: the section with its adapter (what the PS holds)."""
    return [
        Stage(i, (m.name,), m, shape_of(m, "input_shape"), shape_of(m, "output_shape"))
        for i, m in enumerate(student.units())
    ]


def section_specs(
    teacher: list[keras.Model], ids: tuple[int, ...]
) -> dict[int, tuple[TensorSpec, TensorSpec]]:
    """Per held section: the teacher input it reads and the teacher output it learns."""
    return {
        i: (TensorSpec("float32", (None, *shape_of(teacher[i], "input_shape"))),
            TensorSpec("float32", (None, *shape_of(teacher[i], "output_shape"))))
        for i in ids
    }


def build_kt(spec: Spec) -> tuple[list[Stage], list[keras.optimizers.Optimizer], KtParts]:
    """The student as the in-process KtSession builds it (same seed, same weights)."""
    teacher = teacher_of(spec)
    student = build_student(spec, teacher, get_spec(spec.data.dataset).input_shape)
    return kt_stages(student), student.optimizers, KtParts(teacher, student)
