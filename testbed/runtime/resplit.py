"""Re-split a stage worker in place: its replica regrouped to a new split epoch.

The protocol (see docs/partition.md): the controller tells the parameter server, then every
stage worker, the new stage ends; stage 0 marks its next batch `drain`; every stage steps that
batch, forwards it still marked, waits for its SG target (so no message of the old shapes is
still coming), pushes its old stage's weights to the parameter server, switches the shapes it
accepts, sends the held-back gradient upstream, pulls its new stage (assembled by the server
from every old owner's units), rebuilds and resumes. A boundary that stays a boundary keeps its
trained SG module: its old owner pushes it to the server (keyed by the boundary's unit) and its
new owner pulls it (`module_moves`). This module is the rebuild: pure TensorFlow over the
worker's replica, no messages.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import keras
import numpy as np

from testbed.algorithms.sg_module import SGModule
from testbed.data import get_spec
from testbed.models import Stage, build_stages, get_model
from testbed.runtime.replica import Replica, set_named_weights
from testbed.runtime.wire.tensors import TensorSpec
from testbed.spec.experiment import Spec
from testbed.training import state
from testbed.training.state import StageParts
from testbed.training.tfsetup import make_optimizer


def split_names(model_key: str, ends: Sequence[int]) -> list[str]:
    """split_after unit names for stage ends (unit indices; the last is the model's end)."""
    names = get_model(model_key).unit_names()
    if not ends or ends[-1] != len(names) - 1:
        raise ValueError(f"stage ends {list(ends)}: expected the last to be unit {len(names) - 1}")
    return [names[e] for e in ends[:-1]]


def stages_for(replica: Replica, ends: Sequence[int]) -> list[Stage]:
    """Fresh Keras stages of the replica's model for the new split (weights set later)."""
    spec = replica.spec
    shape = get_spec(spec.data.dataset).input_shape
    return build_stages(get_model(spec.model.name), shape, split_names(spec.model.name, ends),
                        spec.model.width)


def stage_ends(replica: Replica) -> list[int]:
    """The unit index each of the replica's stages ends at (its current split)."""
    index = {name: i for i, name in enumerate(get_model(replica.spec.model.name).unit_names())}
    return [index[s.units[-1]] for s in replica.stages]


class ModuleMove(NamedTuple):
    push: int | None  # the boundary (unit) whose SG module this stage hands to another stage
    pull: int | None  # the boundary whose SG module this stage takes from another stage


def module_moves(old_ends: Sequence[int], new_ends: Sequence[int], index: int) -> ModuleMove:
    """Which SG module stage `index` hands on and which it takes at a re-split (pure).

    A stage's SG module sits at the boundary it ends at (the last stage has none). A boundary
    of the new split that was one of the old split keeps its module: when its owner changes,
    the old owner pushes it and the new owner pulls it. A boundary that stays with the same
    stage is kept in place; a boundary that is new gets a fresh module."""
    old = {u: s for s, u in enumerate(old_ends[:-1])}
    new = {u: s for s, u in enumerate(new_ends[:-1])}
    push = next((u for u, s in old.items() if s == index and new.get(u, index) != index), None)
    pull = next((u for u, s in new.items() if s == index and old.get(u, index) != index), None)
    return ModuleMove(push, pull)


def new_module(spec: Spec, act_shape: tuple[int, ...],
               num_classes: int) -> tuple[SGModule, keras.optimizers.Optimizer]:
    """A fresh (zero-output) SG module for an activation shape and its optimizer."""
    c = spec.algorithm.sg
    module = SGModule(act_shape, num_classes, c.conditioned, c.width, c.depth, c.kernel)
    return module, make_optimizer("adam", c.lr)


def _module_parts(module: SGModule,
                  optimizer: keras.optimizers.Optimizer) -> dict[int, StageParts]:
    """The module and its optimizer as checkpoint parts (named 'stage0/weights/...',
    'stage0/optimizer/...': testbed.training.state's names, its capture, specs and restore)."""
    return {0: StageParts(module, optimizer)}


def module_state(module: SGModule,
                 optimizer: keras.optimizers.Optimizer) -> dict[str, np.ndarray]:
    """An SG module's weights and its optimizer's variables (Adam moments, step), by name."""
    return state.capture(_module_parts(module, optimizer))


def module_state_specs(spec: Spec, act_shape: tuple[int, ...], num_classes: int
                       ) -> dict[str, TensorSpec]:
    """Names, dtypes and shapes of `module_state` for the module at an activation shape (what
    the parameter server validates a carried module against)."""
    specs = state.specs(_module_parts(*new_module(spec, act_shape, num_classes)))
    return {name: TensorSpec(dtype, shape) for name, (dtype, shape) in specs.items()}


def unit_output_shapes(replica: Replica) -> list[tuple[int, ...]]:
    """The activation shape after each unit of the replica's model (one stage per unit)."""
    n = len(get_model(replica.spec.model.name).unit_names())
    return [s.output_shape for s in stages_for(replica, range(n))]


class Regrouped(NamedTuple):
    units: bool  # the stage's units changed (weights pulled, a fresh optimizer)
    new_sg: bool  # a fresh (zero) SG module was made at its end
    carried_sg: bool = False  # the SG module at its end came from its boundary's old owner


def regroup(replica: Replica, index: int, stages: list[Stage],
            weights: Mapping[str, np.ndarray],
            carried: Mapping[str, np.ndarray] | None = None) -> Regrouped:
    """Install the new split in the replica: every stage's shape, and this worker's stage.
    A stage that keeps its units keeps everything (weights, optimizer state, SG module);
    otherwise it takes `weights` (pulled from the parameter server) and a fresh optimizer, and
    the SG module at its end is kept when it ends at the same unit as before, restored from
    `carried` (module_state of the boundary's old owner) when given, else made fresh for the
    new activation."""
    spec, old = replica.spec, replica.stages[index]
    if stages[index].units == old.units:
        replica.stages[:] = [*stages[:index], old, *stages[index + 1 :]]
        return Regrouped(False, False)
    set_named_weights(stages[index].model, dict(weights))
    replica.stages[:] = stages
    t = spec.training
    replica.optimizers[index] = make_optimizer(t.optimizer, t.lr)
    if index >= len(replica.sgs) or stages[index].units[-1] == old.units[-1]:
        return Regrouped(True, False)
    module, optimizer = new_module(spec, stages[index].output_shape, replica.num_classes)
    if carried is not None:
        state.restore(_module_parts(module, optimizer), carried)
    replica.sgs[index], replica.sg_optimizers[index] = module, optimizer
    return Regrouped(True, carried is None, carried is not None)
