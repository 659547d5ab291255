"""Run a knowledge-transfer spec in process: teacher, the student by its method, a fine-tune."""

from __future__ import annotations

from typing import Any

import keras

from testbed.controller.distributed import run_distributed
from testbed.controller.sinks import recording
from testbed.data import Dataset
from testbed.metrics.run_dir import RunDir
from testbed.models import get_model, resolve_split
from testbed.models.pairs import compression
from testbed.runtime import workdir
from testbed.runtime.checkpoints import load_checkpoint
from testbed.spec.experiment import Spec
from testbed.spec.kt import student_split
from testbed.training.kt_phase import accuracy, eval_split
from testbed.training.kt_progressive import train_progressive
from testbed.training.kt_session import KtSession, finetune_phase
from testbed.training.kt_teacher import Teacher, obtain_teacher
from testbed.training.kt_trainables import build_student, save_teacher
from testbed.training.loop import KindRecorder, Recorder, environment_info, setup, train


def _params(models: list[keras.Model]) -> list[int]:
    return [int(m.count_params()) for m in models]


def kt_summary(session: KtSession, teacher: Teacher, student: list[keras.Model],
               losses: dict[str, list[float]]) -> dict[str, Any]:
    """The `kt` block of summary.json: teacher, sizes, compression, section losses."""
    kt = session.spec.algorithm.kt
    sp, tp = _params(student), teacher.params()
    return {
        "method": kt.method, "pair": kt.pair,
        "teacher": {"source": teacher.source, "path": teacher.path, "params": sum(tp),
                    "section_params": tp, **teacher.info},
        "student": {"model": session.spec.model.name, "width": session.spec.model.width,
                    "params": sum(sp), "section_params": sp,
                    "training_params": session.trainable_params(),
                    "adapter_params": session.adapter_params(),
                    "aux_head_params": session.head_params()},
        "compression": compression(sum(tp), sum(sp)),
        "loss": {"temperature": kt.temperature, "kd_weight": kt.kd_weight,
                 "section_loss": kt.section_loss, "section_weight": kt.section_weight,
                 "section_input": kt.section_input, "student_share": kt.student_share,
                 "aux_head_weight": kt.aux_head_weight},
        "section_losses": losses,
    }


def _finetune(spec: Spec, session: KtSession, student: list[keras.Model], rec: Recorder,
              progress: bool) -> dict[str, Any]:
    phase = finetune_phase(spec, session.data, session.teacher, student)
    result = train(phase, KindRecorder(rec, "finetune_"), progress)  # type: ignore[arg-type]
    return {"steps": result["iterations"], "final_test_accuracy": result["final_test_accuracy"],
            "best_test_accuracy": result["best_test_accuracy"],
            "train_time_s": result["train_time_s"], "mean_it_s": result["mean_it_s"]}


def run_kt(spec: Spec, run: RunDir, progress: bool = True) -> dict[str, Any]:
    """Teach the spec's student by algorithm.kt.method; returns the summary body.

    Every phase's points (teacher_*, the student's train/eval, finetune_*) also go to the
    InfluxDB sink when one is configured."""
    data = setup(spec, run)
    with recording(spec, run) as (rec, sink_counts):
        summary = _teach(spec, data, run, rec, progress)
    return {**summary, **sink_counts}


def _teach(spec: Spec, data: Dataset, run: RunDir, rec: Recorder,
           progress: bool) -> dict[str, Any]:
    teacher = obtain_teacher(spec, data, run, rec, progress)
    session = KtSession.build(spec, data, teacher.sections)
    before = session.section_losses()
    student_rec = KindRecorder(rec, rename={"sg_loss": "section_loss"})
    if spec.algorithm.kt.section_input == "progressive":
        result = train_progressive(session, student_rec, progress)
    else:
        result = train(session, student_rec, progress)  # type: ignore[arg-type]
    progressive = result.pop("progressive", None)
    student = session.student()
    losses = {"before": before, "after": session.section_losses()}
    summary: dict[str, Any] = {
        **result, **environment_info(data),
        "deployed_test_accuracy": accuracy(student, *eval_split(spec, data)),
        "params": {"stages": _params(student), "teacher_stages": teacher.params()},
        "stages": _groups(spec),
        "kt": kt_summary(session, teacher, student, losses),
    }
    if progressive:
        summary["kt"]["progressive"] = progressive
    if spec.algorithm.kt.finetune_steps:
        summary["kt"]["finetune"] = _finetune(spec, session, student, rec, progress)
    return summary


def run_kt_sections(spec: Spec, run: RunDir, progress: bool = True) -> dict[str, Any]:
    """Distributed section-kt: the teacher worker streams section activations to the student
    section workers (job.mode kt-sections); the controller prepares the teacher and, at the end,
    folds the student from the parameter server's final checkpoint and evaluates it. With
    InfluxDB configured, the teacher phase writes through its own sink (closed before the
    workers' sink opens; an undelivered spool carries over) and its counts are reported apart."""
    data = setup(spec, run)
    with recording(spec, run) as (rec, teacher_counts):  # the workers' sink opens later
        teacher = obtain_teacher(spec, data, run, rec, progress)
    path = workdir.workers_dir(run.path) / workdir.TEACHER  # every worker (and container) reads it
    save_teacher(teacher.sections, path, teacher.info)
    kt = spec.algorithm.kt.model_copy(update={"teacher": str(path)})
    wspec = spec.model_copy(update={"algorithm": spec.algorithm.model_copy(update={"kt": kt})})
    body = run_distributed(wspec, run, progress)
    student = build_student(wspec, teacher.sections, tuple(data.input_shape))
    _, arrays = load_checkpoint(workdir.workers_dir(run.path) / workdir.CHECKPOINT)
    for unit, weights in zip(student.units(), arrays, strict=True):
        unit.set_weights(weights)
    session = KtSession(spec, data, teacher.sections, student.sections, student.optimizers,
                        student.adapters)
    deployed = session.student()
    losses = {"after": session.section_losses()}
    body.update({
        "deployed_test_accuracy": accuracy(deployed, *eval_split(spec, data)),
        "params": {"stages": _params(deployed), "teacher_stages": teacher.params()},
        "stages": _groups(spec),
        "kt": kt_summary(session, teacher, deployed, losses),
    })
    if teacher_counts:
        body["influx_teacher_phase"] = teacher_counts["influx"]
    return body


def _groups(spec: Spec) -> list[list[str]]:
    return resolve_split(get_model(spec.model.name), student_split(spec.algorithm.kt, spec.model))
