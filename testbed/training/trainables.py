"""The seeded stages, SG modules or auxiliary heads and optimizers a spec asks for: one builder
for process and workers."""

from __future__ import annotations

from dataclasses import dataclass, field

import keras

from testbed.algorithms.aux_head import AuxHead
from testbed.algorithms.sg_module import SGModule
from testbed.models import Stage, build_stages, get_model
from testbed.spec.experiment import Spec
from testbed.training.tfsetup import make_optimizer


@dataclass
class Trainables:
    """Everything that trains, in construction order (the order fixes the seeded weights)."""

    stages: list[Stage]
    optimizers: list[keras.optimizers.Optimizer]
    sgs: list[SGModule]
    sg_optimizers: list[keras.optimizers.Optimizer]
    heads: list[AuxHead] = field(default_factory=list)
    head_optimizers: list[keras.optimizers.Optimizer] = field(default_factory=list)


def build_trainables(spec: Spec, input_shape: tuple[int, ...], num_classes: int) -> Trainables:
    """Seed Keras, then build stages, their optimizers and one SG module (sg) or auxiliary head
    (local) per split."""
    keras.utils.set_random_seed(spec.training.seed)
    model = get_model(spec.model.name)
    stages = build_stages(model, input_shape, spec.model.split_after, spec.model.width)
    t = spec.training
    optimizers = [make_optimizer(t.optimizer, t.lr) for _ in stages]
    sgs = _sg_modules(spec, stages, num_classes)
    sg_optimizers = [make_optimizer("adam", spec.algorithm.sg.lr) for _ in sgs]
    heads = _heads(spec, stages, num_classes)
    head_lr = spec.algorithm.local.lr or t.lr
    head_optimizers = [make_optimizer(t.optimizer, head_lr) for _ in heads]
    return Trainables(stages, optimizers, sgs, sg_optimizers, heads, head_optimizers)


def _sg_modules(spec: Spec, stages: list[Stage], num_classes: int) -> list[SGModule]:
    if spec.algorithm.name != "sg":
        return []
    c = spec.algorithm.sg
    return [SGModule(s.output_shape, num_classes, c.conditioned, c.width, c.depth, c.kernel)
            for s in stages[:-1]]


def _heads(spec: Spec, stages: list[Stage], num_classes: int) -> list[AuxHead]:
    if spec.algorithm.name != "local":
        return []
    c = spec.algorithm.local
    return [AuxHead(s.output_shape, num_classes, c.width, c.depth, c.pool) for s in stages[:-1]]
