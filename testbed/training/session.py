"""What one in-process training run holds: data, stages, SG modules or auxiliary heads,
optimizers, compiled steps."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from testbed.algorithms.aux_head import AuxHead
from testbed.algorithms.bp import accuracy_count, bp_step, forward
from testbed.algorithms.local import local_train_step
from testbed.algorithms.sg import sends_target, sg_train_step
from testbed.algorithms.sg_module import SGModule
from testbed.algorithms.wire_codec import crossing, wire_codecs
from testbed.data import Dataset
from testbed.models import Stage
from testbed.spec.experiment import Spec
from testbed.training.state import StageParts, stage_parts
from testbed.training.tfsetup import configure_threads, make_optimizer  # noqa: F401  (re-exported)
from testbed.training.trainables import build_trainables


@dataclass
class Session:
    """Stages and their training state, with one compiled step and an evaluation function."""

    spec: Spec
    data: Dataset
    stages: list[Stage]
    optimizers: list[keras.optimizers.Optimizer]
    sgs: list[SGModule] = field(default_factory=list)
    sg_optimizers: list[keras.optimizers.Optimizer] = field(default_factory=list)
    heads: list[AuxHead] = field(default_factory=list)
    head_optimizers: list[keras.optimizers.Optimizer] = field(default_factory=list)

    @classmethod
    def build(cls, spec: Spec, data: Dataset) -> Session:
        t = build_trainables(spec, data.input_shape, data.num_classes)
        return cls(spec, data, t.stages, t.optimizers, t.sgs, t.sg_optimizers, t.heads,
                   t.head_optimizers)

    @property
    def models(self) -> list[keras.Model]:
        return [s.model for s in self.stages]

    def parts(self) -> dict[int, StageParts]:
        """Every stage's model, optimizer and SG module or head: what a checkpoint holds."""
        return stage_parts(range(len(self.stages)), self.models, self.optimizers, self.sgs,
                           self.sg_optimizers, self.heads, self.head_optimizers)  # fmt: skip

    def compile_step(self) -> Any:
        """The per-batch training step: (x, y) -> (loss, correct, aux loss), called once per
        batch in order; the aux loss is the SG modules' regression loss (sg) or the heads' mean
        loss (local). Stages meet through job.wire's codecs, as over the network."""
        models, opts = self.models, self.optimizers
        wire = wire_codecs(self.spec.job.wire)
        if self.spec.algorithm.name == "bp":
            link = crossing(*wire)

            def step(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
                loss, logits = bp_step(models, opts, x, y, link)
                return loss, accuracy_count(logits, y), tf.constant(0.0)

            return tf.function(step)
        if self.spec.algorithm.name == "local":
            return self._local_step(wire[0])
        return self._sg_step(wire)

    def _local_step(self, act_codec: Any) -> Any:
        """Local losses' step: every stage on its head (the last on the true loss); aux loss =
        the heads' mean loss. Activations cross through the wire's codec; nothing comes back."""
        models, opts = self.models, self.optimizers
        heads, head_opts = self.heads, self.head_optimizers

        def step(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
            loss, logits, local = local_train_step(models, heads, opts, head_opts, x, y, act_codec)
            return loss, accuracy_count(logits, y), tf.reduce_mean(local)

        return tf.function(step)

    def _sg_step(self, wire: Any) -> Any:
        """SG's step: batches 1, 1 + k, ... send targets (k = algorithm.sg.target_every) and the
        modules learn from them; sg_loss is the latest module loss."""
        models, opts, sgs, sg_opts = self.models, self.optimizers, self.sgs, self.sg_optimizers
        classes, cfg = self.data.num_classes, self.spec.algorithm.sg

        def make(learn: bool) -> Any:
            def step(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, Any]:
                loss, logits, sg_loss = sg_train_step(
                    models, sgs, opts, sg_opts, x, y, classes, cfg.grad_scale, wire, learn
                )
                return loss, accuracy_count(logits, y), sg_loss

            return tf.function(step)

        learning, coasting = make(True), make(False)
        batches, last = [0], [tf.constant(0.0)]

        def step(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
            batches[0] += 1
            if sends_target(batches[0], cfg.target_every):
                loss, correct, last[0] = learning(x, y)
            else:
                loss, correct, _ = coasting(x, y)
            return loss, correct, last[0]

        return step

    def evaluator(self, batch: int = 1000) -> Any:
        """A function returning test accuracy of the current weights on the (first N) test samples."""
        models = self.models
        n = self.spec.training.eval_samples or len(self.data.y_test)
        x, y = self.data.x_test[:n], self.data.y_test[:n]
        count = tf.function(lambda xb, yb: accuracy_count(forward(models, xb), yb))

        def evaluate() -> float:
            if self.data.synthetic:
                return math.nan  # generated data: no accuracy to report
            correct = sum(int(count(x[i : i + batch], y[i : i + batch])) for i in range(0, n, batch))
            return correct / n

        return evaluate

    def param_counts(self) -> dict[str, Any]:
        return {
            "stages": [s.model.count_params() for s in self.stages],
            "sg_modules": [m.count_params() for m in self.sgs],
            "aux_heads": [h.count_params() for h in self.heads],
        }


def fetch_batch(data: Dataset, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return data.x_train[idx], data.y_train[idx]
