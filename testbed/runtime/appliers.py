"""The parameter server's optimizer steps: one compiled step per stage, traced before the server
is ready."""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from testbed.runtime.replica import Replica


def make_appliers(replica: Replica) -> list[Any]:
    """One compiled optimizer step per stage (eager Keras updates cost ~10x more CPU, on the
    device that hosts the server)."""

    def applier(opt: Any, variables: list[tf.Variable]) -> Any:
        return tf.function(lambda grads: opt.apply_gradients(zip(grads, variables, strict=True)))

    return [
        applier(opt, stage.model.trainable_variables)
        for stage, opt in zip(replica.stages, replica.optimizers, strict=True)
    ]


def warm_appliers(appliers: list[Any], replica: Replica) -> None:
    """Run each stage's compiled optimizer step once on zero gradients, then put its weights and
    optimizer state back: the server pays the tracing before it is ready, not while the first
    pushed step waits (a remote replica's first step stalled for its device's tracing)."""
    for apply, stage, opt in zip(appliers, replica.stages, replica.optimizers, strict=True):
        trainable = stage.model.trainable_variables
        opt.build(trainable)
        held = [*stage.model.weights, *opt.variables]
        saved = [v.numpy() for v in held]
        apply([tf.zeros_like(v) for v in trainable])
        for v, value in zip(held, saved, strict=True):
            v.assign(value)
