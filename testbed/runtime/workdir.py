"""The controller <-> worker contract: every file and environment variable that crosses it.

A distributed run's workers share one folder, `<run>/workers/` (mounted into containers at the
same path). The controller writes each worker's config there and the worker writes back its
ready file, metrics, summary and log; the parameter server keeps its checkpoint there and a KT
run's teacher is saved there for every worker to read. Both sides name these files only
through this module.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

WORKERS_DIR = "workers"  # under the run directory
CONFIG = ".json"  # <name>.json: the WorkerConfig the controller wrote
READY = ".ready.json"  # {"address", "pid", "role"} once the worker's server listens
METRICS = ".metrics.jsonl"  # the worker's points, tailed by the controller as they come
SUMMARY = ".summary.json"  # the worker's report when its loop has finished
LOG = ".log"  # stdout and stderr
TEACHER = "teacher.keras"  # kt-sections: the saved teacher every worker loads
CHECKPOINT = "checkpoint"  # the parameter server's latest weights
CHECKPOINTS = "checkpoints"  # full training state, ckpt-<step>.npz (testbed.training.checkpoint)

# The environment a worker is started with. glibc serves every allocation over 128 KB with a
# fresh mmap and returns it on free, so each multi-MB tensor copy on the message path (bytes,
# protobuf, gRPC slices) page-faults its way through new memory: a 3.2 MB Forward cost ~11 ms of
# CPU on each side. Keeping such buffers in the heap for reuse cuts that to ~2.5 / 4 ms
# (measured over loopback gRPC; docs/benchmarks.md, transport). glibc reads these at start-up.
WORKER_ENV = {
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "PYTHONUNBUFFERED": "1",
    "MALLOC_MMAP_THRESHOLD_": str(128 * 1024 * 1024),
    "MALLOC_TRIM_THRESHOLD_": str(512 * 1024 * 1024),
}
WORKER_MODULE = "testbed.runtime.worker"  # python -m WORKER_MODULE <workdir>/<name>.json


def workers_dir(run_path: Path) -> Path:
    return run_path / WORKERS_DIR


def worker_file(workdir: Path, name: str, suffix: str) -> Path:
    """workdir/<name><suffix>, e.g. worker_file(w, 'stage0', READY)."""
    return workdir / f"{name}{suffix}"


def read_ready(workdir: Path, name: str) -> str | None:
    """The address a worker listens on, once it has written its ready file."""
    path = worker_file(workdir, name, READY)
    return str(json.loads(path.read_text())["address"]) if path.exists() else None


def read_summary(workdir: Path, name: str) -> dict[str, Any]:
    return dict(json.loads(worker_file(workdir, name, SUMMARY).read_text()))
