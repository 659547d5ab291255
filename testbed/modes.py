"""Training modes: one registration per `job.mode`, the only place a mode is defined.

A mode says which algorithm it trains, which runner the controller calls, how its workers are
laid out, what a stage worker receives, which loop each worker role runs and how the run's
throughput adds up. The spec validates against it, the controller plans and runs from it, and
a worker picks its loop from it. Runners and loops are named as ``module:attribute`` and
imported only by whoever calls them, so this module imports nothing of the testbed and every
layer may read it. Adding a mode is one `register_mode` call here plus its own loop module.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Literal

from testbed.registry import Registry

Layout = Literal["inprocess", "pipeline", "local", "replicas", "sections"]
Receives = Literal["nothing", "bp", "sg", "forward", "kt"]
DataRole = Literal["stage0", "replica", "teacher"]

_DISTRIBUTED = "testbed.controller.distributed:run_distributed"


@dataclass(frozen=True)
class Mode:
    """What one `job.mode` is.

    layout: inprocess (no workers); pipeline (stages in contiguous blocks over >= 2 devices);
      local (one worker holds every stage); replicas (job.replicas full-model copies);
      sections (a KT teacher streaming to student-section workers).
    receives: the buffers a stage worker gets: nothing, bp (activations in, true gradients
      back, blocking), sg (activations in, SG targets back, bounded staleness), forward
      (activations in, nothing back), kt (the teacher's section stream).
    loops: worker role -> "module:Class" of its training loop (see testbed.runtime.loops).
    """

    name: str
    algorithm: str | None  # the algorithm.name it trains; None: any
    description: str
    layout: Layout
    runner: str = _DISTRIBUTED
    receives: Receives = "nothing"
    loops: dict[str, str] = field(default_factory=dict)
    data_role: DataRole = "stage0"  # the worker that reads the dataset
    one_stage_per_worker: bool = False  # every split point needs its own worker (sg)
    micro_batched: bool = False  # splits each batch into job.micro_batches (GPipe)
    throughput: Literal["slowest", "sum"] = "slowest"  # pipeline stages vs replicas

    @property
    def distributed(self) -> bool:
        return self.layout != "inprocess"

    @property
    def ps_trains(self) -> bool:
        """Whether the parameter server is part of the training (dp-async applies the
        gradients) rather than its observer (it evaluates the weights stage workers push)."""
        return self.layout == "replicas"

    def micro_batches(self, job: Any) -> int:
        """Micro-batches per batch for this mode under `job` (1 unless micro-batched)."""
        return int(job.micro_batches) if self.micro_batched else 1


MODES: Registry[Mode] = Registry("mode")


def register_mode(mode: Mode) -> Mode:
    return MODES.register(mode.name)(mode)


def load(ref: str) -> Any:
    """Import "module:attribute" and return the attribute (a runner or a loop class)."""
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


def get_mode(name: str) -> Mode:
    return MODES.get(name)


_LOOPS = "testbed.runtime.loops"

register_mode(Mode(
    "inprocess", None, "every stage in this process: the reference for distributed runs",
    layout="inprocess", runner="testbed.controller.inprocess:run_inprocess",
))
register_mode(Mode(
    "sg", "sg", "one stage per worker, updated at once from its SG module; targets come late",
    layout="pipeline", receives="sg", loops={"stage": f"{_LOOPS}.sg:SGStage"},
    one_stage_per_worker=True,
))
register_mode(Mode(
    "local", "local", "stages train on their own auxiliary heads; activations go forward only",
    layout="pipeline", receives="forward", loops={"stage": f"{_LOOPS}.local:LocalStage"},
))
register_mode(Mode(
    "bp-sync", "bp", "model-parallel backprop: one batch in flight across the stage workers",
    layout="pipeline", receives="bp", loops={"stage": f"{_LOOPS}.bp:BPStage"},
))
register_mode(Mode(
    "bp-pipeline", "bp", "GPipe: each batch split into job.micro_batches flowing through the stages",
    layout="pipeline", receives="bp", loops={"stage": f"{_LOOPS}.bp:BPStage"}, micro_batched=True,
))
register_mode(Mode(
    "bp-local", "bp", "one worker holds every stage: backprop on one device, no network",
    layout="local", loops={"stage": f"{_LOOPS}.bp:LocalBP"},
))
register_mode(Mode(
    "dp-async", "bp", "data-parallel replicas push gradients to the parameter server (async SGD)",
    layout="replicas", loops={"replica": f"{_LOOPS}.dp_async:AsyncReplica"},
    data_role="replica", throughput="sum",
))
register_mode(Mode(
    "kt-sections", "kt", "a cloud teacher streams section activations to student-section workers",
    layout="sections", runner="testbed.controller.kt_run:run_kt_sections", receives="kt",
    loops={"teacher": f"{_LOOPS}.kt:TeacherStream", "stage": f"{_LOOPS}.kt:KtSections"},
    data_role="teacher",
))
