"""The teacher of a knowledge-transfer run: trained in the run, reused from a cache, or loaded.

Teachers are saved in the Keras v3 `.keras` format as a `keras.Sequential` whose layers are the
section models, with a JSON sidecar of how they were trained; loading always uses
`safe_mode=True` (no pickled or arbitrary code).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras

from testbed.data import Dataset
from testbed.metrics.run_dir import RunDir
from testbed.spec.experiment import AlgorithmCfg, ModelCfg, Spec
from testbed.spec.load import spec_to_dict
from testbed.training.kt_phase import accuracy
from testbed.training.kt_trainables import load_teacher, save_teacher
from testbed.training.loop import KindRecorder, Recorder, train
from testbed.training.session import Session

CACHE_DIR = "kt-teachers"
TEACHER_EVALS = 4  # test evaluations while a teacher trains (the last one is its accuracy)


@dataclass
class Teacher:
    """The teacher's sections (inference only) and where they came from."""

    sections: list[keras.Model]
    source: str  # "trained", "cache" or "file"
    path: str | None
    info: dict[str, Any] = field(default_factory=dict)

    def params(self) -> list[int]:
        return [int(s.count_params()) for s in self.sections]


def teacher_spec(spec: Spec) -> Spec:
    """The spec that trains a zoo teacher with BP: the teacher model, its steps and lr."""
    kt, t = spec.algorithm.kt, spec.training
    key = kt.teacher_key()
    if key is None:
        raise ValueError(f"algorithm.kt.teacher {kt.teacher!r} is a saved model, not a zoo key")
    iterations = kt.teacher_iterations or t.iterations
    training = t.model_copy(update={
        "iterations": iterations, "lr": kt.teacher_lr or t.lr,
        "eval_every": max(1, iterations // TEACHER_EVALS)})
    return spec.model_copy(update={
        "name": f"{spec.name}-teacher",
        "model": ModelCfg(name=key, width=kt.teacher_width_or_default(),
                          split_after=kt.teacher_split()),
        "algorithm": AlgorithmCfg(name="bp"), "training": training})


def fingerprint(spec: Spec) -> str:
    """A digest of everything that determines a trained teacher's weights."""
    d = spec_to_dict(spec)
    t = {k: v for k, v in d["training"].items() if k not in ("log_every", "eval_every", "threads")}
    key = json.dumps({"model": d["model"], "data": d["data"], "training": t}, sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _sidecar(path: Path) -> dict[str, Any]:
    side = path.with_suffix(".json")
    return json.loads(side.read_text()) if side.is_file() else {}


def _train(spec: Spec, data: Dataset, rec: Recorder,
           progress: bool) -> tuple[list[keras.Model], dict[str, Any]]:
    session = Session.build(spec, data)
    result = train(session, KindRecorder(rec, "teacher_"), progress)
    info = {"iterations": result["iterations"], "train_time_s": result["train_time_s"],
            "mean_it_s": result["mean_it_s"], "lr": spec.training.lr,
            "model": spec.model.name, "width": spec.model.width}
    return session.models, info


def obtain_teacher(spec: Spec, data: Dataset, run: RunDir, rec: Recorder,
                   progress: bool = True) -> Teacher:
    """Load the saved teacher, reuse a cached one, or train it here (and cache it)."""
    kt = spec.algorithm.kt
    saved = kt.saved_teacher()
    if saved is not None:
        teacher = Teacher(load_teacher(saved), "file", str(saved), _sidecar(saved))
    else:
        tspec = teacher_spec(spec)
        cached = run.path.parents[1] / CACHE_DIR / f"{tspec.model.name}-{fingerprint(tspec)}.keras"
        if kt.teacher_cache and cached.is_file():
            teacher = Teacher(load_teacher(cached), "cache", str(cached), _sidecar(cached))
        else:
            models, info = _train(tspec, data, rec, progress)
            for m in models:
                m.trainable = False
            teacher = Teacher(models, "trained", None, info)
            if kt.teacher_cache:
                save_teacher(models, cached, info)
                teacher.path = str(cached)
    n = spec.training.eval_samples or len(data.y_test)
    teacher.info["test_accuracy"] = accuracy(teacher.sections, data.x_test[:n], data.y_test[:n])
    run.event("teacher_ready", source=teacher.source, path=teacher.path,
              test_accuracy=teacher.info["test_accuracy"])
    return teacher
