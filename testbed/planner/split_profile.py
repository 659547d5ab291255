"""Time each stage doing exactly what a worker does per step, in process: the t_i of the bounds."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import keras
import numpy as np
import tensorflow as tf

from testbed.algorithms.bp import apply_stage_grads, forward, last_stage_grads, stage_grads
from testbed.algorithms.sg import sg_last_stage_step, sg_module_step, sg_stage_step
from testbed.algorithms.sg_module import SGModule
from testbed.data import get_spec
from testbed.models import Stage, build_stages, get_model
from testbed.planner.balance import Balanced, balance_split
from testbed.spec.experiment import Spec

Kind = Literal["sg", "bp"]


@dataclass(frozen=True)
class StageTiming:
    """Median seconds of one stage's step (sg: stage step; bp: forward + backward + update)
    and of its SG module's update (0 for bp and for the last stage); wall and process CPU."""

    stage: int
    units: tuple[str, ...]
    step_s: float
    sg_s: float
    cpu_s: float  # process CPU seconds of step + SG update: comparable on a shared machine

    @property
    def total_s(self) -> float:
        return self.step_s + self.sg_s

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "total_s": self.total_s}


def median_times(fn: Callable[[], object], reps: int, warmup: int = 2) -> tuple[float, float]:
    """Median wall and median process-CPU seconds of fn()."""
    for _ in range(warmup):
        fn()
    wall, cpu = [], []
    for _ in range(reps):
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return float(np.median(wall)), float(np.median(cpu))


def _sync(fn: Callable[[], Any]) -> Callable[[], None]:
    return lambda: tf.nest.map_structure(lambda t: t.numpy() if t is not None else None, fn())


def sg_step_fns(
    s: Stage, sg: SGModule | None, last: bool, batch: int, classes: int, scale: float
) -> tuple[Callable[[], None], Callable[[], None] | None]:
    opt = keras.optimizers.Adam(1e-9)
    h = tf.random.normal((batch, *s.input_shape))
    y = tf.zeros((batch,), tf.int64)
    if last or sg is None:
        return _sync(tf.function(lambda: sg_last_stage_step(s.model, opt, h, y))), None
    y1h = tf.one_hot(tf.zeros((batch,), tf.int32), classes)
    step = tf.function(
        lambda: sg_stage_step(s.model, sg, opt, h, y1h, scale, input_grad=s.index > 0)
    )
    out, target = (
        tf.random.normal((batch, *s.output_shape)),
        tf.random.normal((batch, *s.output_shape)),
    )
    sg_opt = keras.optimizers.Adam(1e-9)
    update = tf.function(lambda: sg_module_step(sg, sg_opt, out, y1h, target))
    return _sync(step), _sync(update)


def unit_body(s: Stage, last: bool, batch: int) -> Callable[[], tf.Tensor]:
    """A stage's work in one step as graph code: forward, backward (to its input unless it is
    the first stage), update; returns a scalar that depends on all of it (the input gradient a
    stage sends upstream included, so a graph cannot prune it)."""
    models, opts = [s.model], [keras.optimizers.Adam(1e-9)]
    h = tf.random.normal((batch, *s.input_shape))
    if last:
        y = tf.zeros((batch,), tf.int64)

        def last_body() -> tf.Tensor:
            loss, _, grads, g_in = last_stage_grads(models, h, y)
            apply_stage_grads(models, opts, grads)
            return loss + tf.reduce_sum(g_in)

        return last_body
    g = tf.random.normal((batch, *s.output_shape))

    def body() -> tf.Tensor:
        grads, g_in = stage_grads(models, h, g, input_grad=s.index > 0)
        apply_stage_grads(models, opts, grads)
        ends = [t for t in (*grads[:1], g_in) if t is not None]
        return tf.add_n([tf.reduce_sum(t) for t in ends]) if ends else tf.constant(0.0)

    return body


def _bp_fn(s: Stage, last: bool, batch: int) -> Callable[[], None]:
    """A bp worker's step: the last stage in one call; any other, forward then backward."""
    if last:
        return _sync(tf.function(unit_body(s, True, batch)))
    models, opts = [s.model], [keras.optimizers.Adam(1e-9)]
    h = tf.random.normal((batch, *s.input_shape))
    g = tf.random.normal((batch, *s.output_shape))
    fwd = tf.function(lambda: forward(models, h, training=True))

    def backward() -> tf.Tensor | None:
        grads, g_in = stage_grads(models, h, g, input_grad=s.index > 0)
        apply_stage_grads(models, opts, grads)
        return g_in

    back = _sync(tf.function(backward))
    return lambda: (fwd().numpy(), back())  # type: ignore[return-value]


def build(spec: Spec, split_after: Sequence[str] | None) -> tuple[list[Stage], list[SGModule], int]:
    """The spec's stages for that split and their SG modules, freshly seeded."""
    ds = get_spec(spec.data.dataset)
    keras.utils.set_random_seed(spec.training.seed)
    stages = build_stages(get_model(spec.model.name), ds.input_shape, split_after, spec.model.width)
    c = spec.algorithm.sg
    sgs = [
        SGModule(s.output_shape, ds.num_classes, c.conditioned, c.width, c.depth, c.kernel)
        for s in stages[:-1]
    ]
    return stages, sgs, ds.num_classes


def time_stages(
    spec: Spec, split_after: Sequence[str] | None, kind: Kind, reps: int = 10
) -> list[StageTiming]:
    """Each stage's per-step time as a worker runs it (first stage: no input gradient)."""
    stages, sgs, classes = build(spec, split_after)
    batch, scale = spec.training.batch_size, spec.algorithm.sg.grad_scale
    out = []
    for s in stages:
        last = s.index == len(stages) - 1
        if kind == "bp":
            wall, cpu = median_times(_bp_fn(s, last, batch), reps)
            out.append(StageTiming(s.index, s.units, wall, 0.0, cpu))
            continue
        step, update = sg_step_fns(s, None if last else sgs[s.index], last, batch, classes, scale)
        sg_wall, sg_cpu = median_times(update, reps) if update is not None else (0.0, 0.0)
        wall, cpu = median_times(step, reps)
        out.append(StageTiming(s.index, s.units, wall, sg_wall, cpu + sg_cpu))
    return out


@dataclass(frozen=True)
class UnitProfile:
    """Per-unit sg step seconds and, per split point (after unit u), the SG module's update."""

    units: tuple[str, ...]
    unit_s: tuple[float, ...]
    sg_s: tuple[float, ...]


def profile_units(spec: Spec, reps: int = 10) -> UnitProfile:
    """Every unit as its own stage: the table balance_split works on."""
    names = get_model(spec.model.name).unit_names()
    timings = time_stages(spec, names[:-1], "sg", reps)
    return UnitProfile(
        tuple(names), tuple(t.step_s for t in timings), tuple(t.sg_s for t in timings[:-1])
    )


def balanced_split(profile: UnitProfile, stages: int) -> tuple[list[str], Balanced]:
    """Unit names to split after (spec.model.split_after) for the most balanced sg stages."""
    best = balance_split(profile.unit_s, stages, profile.sg_s)
    return [profile.units[i] for i in best.splits], best
