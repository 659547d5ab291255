"""Teacher/student pairs for knowledge transfer: zoo keys plus section splits, sizes computed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from testbed.models.zoo import get_model, resolve_split
from testbed.registry import Registry


@dataclass(frozen=True)
class KtPair:
    """A teacher and a student from the zoo, each split into the same number of sections."""

    key: str
    description: str
    teacher: str
    teacher_split: tuple[str, ...]
    student: str
    student_split: tuple[str, ...]
    input_shape: tuple[int, int, int]
    dataset: str
    teacher_width: float = 1.0
    student_width: float = 1.0


KT_PAIRS: Registry[KtPair] = Registry("kt pair")


def get_pair(key: str) -> KtPair:
    return KT_PAIRS.get(key)


def section_count(model_key: str, split: Sequence[str] | None) -> int:
    return len(resolve_split(get_model(model_key), split))


def check_sections(teacher: str, teacher_split: Sequence[str] | None,
                   student: str, student_split: Sequence[str] | None) -> int:
    """The common number of sections; ValueError when teacher and student split differently."""
    nt, ns = section_count(teacher, teacher_split), section_count(student, student_split)
    if nt != ns:
        raise ValueError(
            f"teacher {teacher} splits into {nt} sections but student {student} into {ns}; "
            "expected the same number (set the split points so each student section mirrors one)"
        )
    return nt


def model_params(key: str, input_shape: tuple[int, ...], split: Sequence[str] | None = None,
                 width: float = 1.0) -> list[int]:
    """Parameters per section of the built Keras model (never typed by hand)."""
    from testbed.models.stages import build_stages

    stages = build_stages(get_model(key), input_shape, split, width)
    return [int(s.model.count_params()) for s in stages]


def compression(teacher_params: int, student_params: int) -> dict[str, float]:
    """Student size relative to the teacher: fraction kept and percent smaller."""
    if teacher_params <= 0:
        raise ValueError(f"teacher_params must be positive, got {teacher_params}")
    ratio = student_params / teacher_params
    return {"teacher_params": teacher_params, "student_params": student_params,
            "student_fraction": ratio, "smaller_pct": 100.0 * (1.0 - ratio),
            "factor": teacher_params / max(student_params, 1)}


def pair_sizes(pair: KtPair, teacher_width: float | None = None,
               student_width: float | None = None) -> dict[str, Any]:
    """Per-section and total parameters of both built models, plus the compression."""
    tw = pair.teacher_width if teacher_width is None else teacher_width
    sw = pair.student_width if student_width is None else student_width
    tp = model_params(pair.teacher, pair.input_shape, pair.teacher_split, tw)
    sp = model_params(pair.student, pair.input_shape, pair.student_split, sw)
    return {"pair": pair.key, "teacher": pair.teacher, "teacher_width": tw,
            "student": pair.student, "student_width": sw, "input_shape": list(pair.input_shape),
            "teacher_sections": tp, "student_sections": sp, **compression(sum(tp), sum(sp))}


def _register(pair: KtPair) -> None:
    check_sections(pair.teacher, pair.teacher_split, pair.student, pair.student_split)
    KT_PAIRS.register(pair.key)(pair)


_register(KtPair(
    key="mnist",
    description="half-width eight-layer teacher -> mnist-student (1 conv per block, half the "
    "teacher's filters, one FC 64), 4 sections; small enough to train on 2 busy cores",
    teacher="eight-layer", teacher_split=("block1", "block2", "fc1"),
    student="mnist-student", student_split=("block1", "block2", "fc1"),
    input_shape=(28, 28, 1), dataset="mnist", teacher_width=0.5,
))

_register(KtPair(
    key="vgg16-cifar10",
    description="VGG16 teacher -> vgg16-student (8 conv, <= 384 filters, FC 256), 4 sections",
    teacher="vgg16", teacher_split=("block2", "block4", "fc1"),
    student="vgg16-student", student_split=("block2", "block4", "fc1"),
    input_shape=(32, 32, 3), dataset="cifar10",
))
