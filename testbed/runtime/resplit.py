"""Re-split a stage worker in place: its replica regrouped to a new split epoch.

The protocol (see docs/partition.md): the controller tells the parameter server, then every
stage worker, the new stage ends; stage 0 marks its next batch `drain`; every stage steps that
batch, forwards it still marked, waits for its SG target (so no message of the old shapes is
still coming), pushes its old stage's weights to the parameter server, switches the shapes it
accepts, sends the held-back gradient upstream, pulls its new stage (assembled by the server
from every old owner's units), rebuilds and resumes. This module is the rebuild: pure
TensorFlow over the worker's replica, no messages.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np

from testbed.algorithms.sg_module import SGModule
from testbed.data import get_spec
from testbed.models import Stage, build_stages, get_model
from testbed.runtime.replica import Replica, set_named_weights
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


class Regrouped(NamedTuple):
    units: bool  # the stage's units changed (weights pulled, a fresh optimizer)
    new_sg: bool  # a new SG module was made at its end


def regroup(replica: Replica, index: int, stages: list[Stage],
            weights: Mapping[str, np.ndarray]) -> Regrouped:
    """Install the new split in the replica: every stage's shape, and this worker's stage.
    A stage that keeps its units keeps everything (weights, optimizer state, SG module);
    otherwise it takes `weights` (pulled from the parameter server) and a fresh optimizer, and
    the SG module at its end is kept when its boundary stayed, else a new one is made for the
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
    c = spec.algorithm.sg
    replica.sgs[index] = SGModule(stages[index].output_shape, replica.num_classes,
                                  c.conditioned, c.width, c.depth, c.kernel)
    replica.sg_optimizers[index] = make_optimizer("adam", c.lr)
    return Regrouped(True, True)
