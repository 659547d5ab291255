"""The `algorithm.kt` block of a spec: knowledge-transfer options and their cross-field checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, field_validator

from testbed.models import MODELS, get_model, resolve_split
from testbed.models.pairs import KT_PAIRS, check_sections, get_pair

SAVED_SUFFIX = ".keras"


class KtCfg(BaseModel):
    """Method, teacher (zoo key, or a saved .keras teacher), loss settings and budgets."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    method: Literal["independent", "kd", "section-kt"] = "section-kt"
    pair: str | None = Field(None, description="KT_PAIRS key: sets teacher, splits and the student")
    teacher: str | None = Field(None, description="zoo model key or path to a saved .keras teacher")
    teacher_split_after: list[str] | None = Field(None, description="teacher section ends")
    teacher_width: float | None = Field(
        None, gt=0, le=8, description="width multiplier of a zoo teacher; default the pair's, or 1")
    teacher_iterations: PositiveInt | None = Field(
        None, description="steps to train a zoo teacher in the run; default training.iterations")
    teacher_lr: PositiveFloat | None = Field(
        None, description="teacher learning rate; default training.lr")
    teacher_cache: bool = Field(True, description="reuse a teacher trained with identical settings")
    temperature: PositiveFloat = 4.0
    kd_weight: float = Field(0.5, ge=0, le=1, description="weight of the soft (teacher) loss")
    section_loss: Literal["mse", "l1"] = "mse"
    section_weight: PositiveFloat = 1.0
    section_input: Literal["teacher", "student", "mixed", "progressive"] = Field(
        "teacher", description="section-kt: each section reads the teacher's section input "
        "(decoupled), the previous student section's output (forward-chained), a mix of the "
        "two in each batch (student_share of it from the student's chain), or, progressive, "
        "the trained student sections' output: sections train one after another, each for "
        "training.iterations steps over the same batches")
    student_share: float = Field(
        0.5, ge=0, le=1, description="section_input mixed: the fraction of each batch a section "
        "reads from the student's own upstream sections (it learns to tolerate their errors)")
    student_share_ramp: int = Field(
        0, ge=0, description="section_input mixed: steps over which the share grows linearly "
        "from 0 to student_share (clean inputs first, progressively the student's); 0 = constant")
    aux_head_weight: float = Field(
        0.0, ge=0, description="section-kt, in process: weight of the KD loss of a linear "
        "auxiliary classifier head on each non-final section's adapted output (trained with the "
        "section, dropped from the deployed student); 0 = no heads")
    finetune_steps: int = Field(0, ge=0, description="section-kt: joint steps after assembly")

    @field_validator("pair")
    @classmethod
    def _known_pair(cls, v: str | None) -> str | None:
        if v is not None:
            KT_PAIRS.get(v)
        return v

    @field_validator("teacher")
    @classmethod
    def _zoo_key_or_saved(cls, v: str | None) -> str | None:
        if v is None or v in MODELS:
            return v
        path = Path(v)
        if path.suffix != SAVED_SUFFIX:
            raise ValueError(
                f"expected a zoo model key ({', '.join(MODELS.keys())}) or a {SAVED_SUFFIX} file "
                "(Keras v3 format, loaded with safe_mode=True)"
            )
        if not path.is_file():
            raise ValueError(f"saved teacher {v} does not exist")
        return v

    def saved_teacher(self) -> Path | None:
        """The saved teacher file, or None when the teacher is a zoo model trained in the run."""
        return Path(self.teacher) if self.teacher and self.teacher.endswith(SAVED_SUFFIX) else None

    def teacher_key(self) -> str | None:
        """The zoo key of the teacher (from `teacher` or the pair), None for a saved teacher."""
        if self.saved_teacher() is not None:
            return None
        return self.teacher or (get_pair(self.pair).teacher if self.pair else None)

    def teacher_width_or_default(self) -> float:
        if self.teacher_width is not None:
            return self.teacher_width
        pair = get_pair(self.pair) if self.pair else None
        return pair.teacher_width if pair and self.teacher in (None, pair.teacher) else 1.0

    def teacher_split(self) -> list[str] | None:
        if self.teacher_split_after is not None or self.pair is None:
            return self.teacher_split_after
        pair = get_pair(self.pair)
        return list(pair.teacher_split) if self.teacher in (None, pair.teacher) else None


def check_kt(algorithm: Any, model: Any, mode: str) -> None:
    """Cross-field checks of a spec's kt block against algorithm.name, model and job.mode."""
    kt: KtCfg = algorithm.kt
    if algorithm.name != "kt":
        if kt != KtCfg():  # a dumped spec carries the default block; that is fine
            raise ValueError(f"algorithm.kt is set but algorithm.name is {algorithm.name!r}; "
                             "kt options need algorithm.name 'kt'")
        return
    if mode not in ("inprocess", "kt-sections"):
        raise ValueError(f"algorithm.name 'kt' runs with job.mode 'inprocess' or 'kt-sections', "
                         f"got job.mode {mode!r}")
    if mode == "kt-sections" and (kt.method, kt.section_input) != ("section-kt", "teacher"):
        raise ValueError(
            f"job.mode 'kt-sections' streams the teacher's section activations to decoupled "
            f"student sections: it needs method 'section-kt' with section_input 'teacher', got "
            f"method {kt.method!r}, section_input {kt.section_input!r}")
    if mode == "kt-sections" and kt.aux_head_weight:
        raise ValueError("algorithm.kt.aux_head_weight trains heads in process; with job.mode "
                         "'kt-sections' set it to 0")
    if mode == "kt-sections" and kt.finetune_steps:
        raise ValueError("algorithm.kt.finetune_steps runs in process; with job.mode "
                         "'kt-sections' set it to 0")
    if kt.pair is None and kt.teacher is None:
        raise ValueError("algorithm.kt needs a teacher: set algorithm.kt.pair (one of "
                         f"{', '.join(KT_PAIRS.keys())}) or algorithm.kt.teacher")
    if kt.pair is not None and model.name != get_pair(kt.pair).student:
        raise ValueError(f"algorithm.kt.pair {kt.pair!r} trains student "
                         f"{get_pair(kt.pair).student!r}, but model.name is {model.name!r}")
    if kt.section_input != "teacher" and kt.method != "section-kt":
        raise ValueError(f"algorithm.kt.section_input applies to method 'section-kt', got "
                         f"method {kt.method!r}")
    if kt.aux_head_weight and kt.method != "section-kt":
        raise ValueError(f"algorithm.kt.aux_head_weight applies to method 'section-kt', got "
                         f"method {kt.method!r}")
    if kt.finetune_steps and kt.method != "section-kt":
        raise ValueError(f"algorithm.kt.finetune_steps applies to method 'section-kt' (the "
                         f"assembled decoupled student), got method {kt.method!r}")
    key = kt.teacher_key()
    if key is not None:
        check_sections(key, kt.teacher_split(), model.name, student_split(kt, model))


def student_split(kt: KtCfg, model: Any) -> list[str] | None:
    """model.split_after, else the pair's student split, else the student's default split."""
    if model.split_after is not None or kt.pair is None:
        return model.split_after
    return list(get_pair(kt.pair).student_split)


def section_count(spec: Any) -> int:
    """Student sections of a KT spec (= the stages of a distributed KT run)."""
    return len(resolve_split(get_model(spec.model.name), student_split(spec.algorithm.kt,
                                                                       spec.model)))
