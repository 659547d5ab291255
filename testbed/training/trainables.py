"""The seeded stages, SG modules and optimizers a spec asks for: one builder for process and workers."""

from __future__ import annotations

from dataclasses import dataclass

import keras

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


def build_trainables(spec: Spec, input_shape: tuple[int, ...], num_classes: int) -> Trainables:
    """Seed Keras, then build stages, their optimizers and (SG only) one SG module per split."""
    keras.utils.set_random_seed(spec.training.seed)
    model = get_model(spec.model.name)
    stages = build_stages(model, input_shape, spec.model.split_after, spec.model.width)
    t = spec.training
    optimizers = [make_optimizer(t.optimizer, t.lr) for _ in stages]
    sgs: list[SGModule] = []
    if spec.algorithm.name == "sg":
        c = spec.algorithm.sg
        sgs = [
            SGModule(s.output_shape, num_classes, c.conditioned, c.width, c.depth, c.kernel)
            for s in stages[:-1]
        ]
    sg_optimizers = [make_optimizer("adam", spec.algorithm.sg.lr) for _ in sgs]
    return Trainables(stages, optimizers, sgs, sg_optimizers)
