"""dp-async: a full-model replica that pulls the weights with a step to do, computes its gradients
and pushes them to the PS; the PS hands out the run's S steps one at a time (dynamic assignment,
as in the seed), so a faster device takes more of them."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import tensorflow as tf

from testbed.algorithms.bp import accuracy_count, bp_grads
from testbed.data.batches import batch_indices
from testbed.runtime.parameter_server import grad_specs
from testbed.runtime.replica import set_named_weights, weight_specs
from testbed.runtime.stage_io import StageIO
from testbed.runtime.wire import serde_ps
from testbed.runtime.wire.serde import Weights
from testbed.runtime.wire.serde_ps import ModelWeights

_NO_STEP_WAIT_S = 0.05


class AsyncReplica:
    """Asynchronous SGD: takes steps from the parameter server until all S are applied."""

    def __init__(self, io: StageIO) -> None:
        cfg, node, replica, data = io.cfg, io.node, io.replica, io.data
        assert data is not None, "a dp-async replica reads the dataset"
        self.io, self.cfg, self.node, self.data = io, cfg, node, data
        self.models = [s.model for s in replica.stages]
        self.ps = io.ps_client
        self.specs = [weight_specs(m) for m in self.models]
        self.names = [list(grad_specs(m)) for m in self.models]

        def step(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, list[list[tf.Tensor]]]:
            loss, logits, grads = bp_grads(self.models, x, y)
            return loss, accuracy_count(logits, y), grads

        self.step_fn = tf.function(step)
        t = cfg.spec.training
        seed = t.seed + cfg.replica_index  # replica 0 sees the in-process batch order
        self.batches: Iterator[np.ndarray] = batch_indices(len(data.y_train), t.batch_size, seed)

    def _pull(self) -> tuple[int, int]:
        """(version, ticket) with the weights loaded; ticket 0: no step free now."""
        msg = self.ps.pull_model()
        if not msg.ticket:
            return int(msg.version), 0
        model = serde_ps.model_from_message(msg, self.specs)
        for m, w in zip(self.models, model.stages, strict=True):
            set_named_weights(m, dict(w.tensors))
        return model.version, model.ticket

    def run(self, total: int) -> int:
        node, t = self.node, self.cfg.spec.training
        step = 0
        while not node.stopped.is_set():
            with node.metrics.timer("blocked_grad_s"):
                version, ticket = self._pull()
            if not ticket:
                if version >= total:
                    break
                node.stopped.wait(_NO_STEP_WAIT_S)  # the last steps are in flight elsewhere
                continue
            idx = next(self.batches)
            with node.metrics.timer("compute_s"):
                loss, correct, grads = self.step_fn(self.data.x_train[idx], self.data.y_train[idx])
                stages = tuple(
                    Weights(i, version, {n: g.numpy() for n, g in zip(names, gs, strict=True)})
                    for i, (names, gs) in enumerate(zip(self.names, grads, strict=True))
                )
            with node.metrics.timer("blocked_output_s"):
                self.ps.push_gradients(ModelWeights(version, stages, ticket))
            step += 1
            node.step = step
            extra = {"loss": float(loss), "train_acc": int(correct) / len(idx)}
            logged = node.metrics.step_done(step, t.log_every, **extra)
            if logged:
                node.metrics.train_point(step, {**extra, "it_s": logged["it_s"]})
        return step

    def finish(self, version: int) -> None:
        """Close the outboxes without pushing weights: gradients went to the PS synchronously,
        and a replica's copy must never overwrite the global weights."""
        self.io.flush()
