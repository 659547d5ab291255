"""A worker's copy of the model: the same seeded stages, SG modules and optimizers as in process."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

from testbed.algorithms.aux_head import AuxHead
from testbed.algorithms.sg_module import SGModule
from testbed.data import get_spec
from testbed.models import Stage
from testbed.runtime.kt_replica import build_kt
from testbed.runtime.wire.tensors import TensorSpec
from testbed.spec.experiment import Spec
from testbed.training import state
from testbed.training.state import SAMPLER_KEY, StageParts, stage_parts
from testbed.training.tfsetup import configure_threads, make_optimizer  # noqa: F401  (re-exported)
from testbed.training.trainables import build_trainables


@dataclass
class Replica:
    """All stages (a worker keeps using only its own), their optimizers, SG modules or heads."""

    spec: Spec
    stages: list[Stage]
    optimizers: list[keras.optimizers.Optimizer]
    num_classes: int
    sgs: list[SGModule] = field(default_factory=list)
    sg_optimizers: list[keras.optimizers.Optimizer] = field(default_factory=list)
    heads: list[AuxHead] = field(default_factory=list)
    head_optimizers: list[keras.optimizers.Optimizer] = field(default_factory=list)
    kt: Any = None  # kt-sections: the teacher and the student's parts (runtime.kt_replica.KtParts)

    def models(self, ids: Sequence[int]) -> list[keras.Model]:
        return [self.stages[i].model for i in ids]

    def opts(self, ids: Sequence[int]) -> list[keras.optimizers.Optimizer]:
        return [self.optimizers[i] for i in ids]


def build_replica(spec: Spec) -> Replica:
    """The same seeded trainables as the in-process Session, so every weight equals the in-process one."""
    ds = get_spec(spec.data.dataset)
    if spec.algorithm.name == "kt":
        stages, optimizers, parts = build_kt(spec)
        return Replica(spec, stages, optimizers, ds.num_classes, kt=parts)
    t = build_trainables(spec, ds.input_shape, ds.num_classes)
    replica = Replica(spec, t.stages, t.optimizers, ds.num_classes)
    replica.sgs, replica.sg_optimizers = t.sgs, t.sg_optimizers
    replica.heads, replica.head_optimizers = t.heads, t.head_optimizers
    return replica


def input_spec(stage: Stage) -> TensorSpec:
    return TensorSpec("float32", (None, *stage.input_shape))


def output_spec(stage: Stage) -> TensorSpec:
    return TensorSpec("float32", (None, *stage.output_shape))


LABELS_SPEC = TensorSpec("int64", (None,))


def weight_names(model: keras.Model) -> list[str]:
    """Unique, ordered names for a model's weights (get_weights order), e.g. '000/kernel'.

    Position plus variable name: stable across builds (layer names get _1 suffixes when a
    process builds the model twice).
    """
    return [f"{i:03d}/{w.name}" for i, w in enumerate(model.weights)]


def weight_specs(model: keras.Model) -> dict[str, TensorSpec]:
    """Expected name -> dtype/shape of every weight (what the parameter server validates)."""
    return {
        name: TensorSpec(w.dtype, tuple(int(d) for d in w.shape))
        for name, w in zip(weight_names(model), model.weights, strict=True)
    }


def get_named_weights(model: keras.Model) -> dict[str, np.ndarray]:
    return dict(zip(weight_names(model), model.get_weights(), strict=True))


def set_named_weights(model: keras.Model, tensors: dict[str, np.ndarray]) -> None:
    model.set_weights([tensors[n] for n in weight_names(model)])


def stage_state_parts(replica: Replica, ids: Sequence[int]) -> dict[int, StageParts]:
    """What a checkpoint holds of stages `ids`: models, optimizers, SG modules or local-loss
    heads and theirs."""
    return stage_parts(ids, [s.model for s in replica.stages], replica.optimizers, replica.sgs,
                       replica.sg_optimizers, replica.heads, replica.head_optimizers)  # fmt: skip


SAMPLER_SPEC = TensorSpec("uint8", (None,))  # the data sampler's position, JSON bytes


def state_specs(replica: Replica, stage_id: int) -> dict[str, TensorSpec]:
    """Expected name -> dtype/shape of one stage's state (what the PS validates on PushState).
    Stage 0's state also carries the data sampler's position."""
    specs = {name: TensorSpec(dtype, shape)
             for name, (dtype, shape) in state.specs(stage_state_parts(replica, [stage_id])).items()}
    if stage_id == 0:
        specs[SAMPLER_KEY] = SAMPLER_SPEC
    return specs
