"""A model's chain of units for the partitioner: sizes from the built model, step times measured.

A stage of units i..j costs sum(unit_s[i..j]) + sg_s[j] + stage_s, each term measured:

    unit_s[u] = what unit u adds to a stage's step: its forward, backward and update run k times
                inside one graph call against once, (T_k - T_1) / (k - 1), so even a unit far
                cheaper than a step call's fixed cost is resolved (`marginal_time`)
    sg_s[u]   = the SG module's prediction at u's output (less an empty call) + its update
    stage_s   = the whole model stepped as one stage, less the sum of its units' unit_s

Times are medians of block means (`mean_time`): under a CPU quota a step either runs at full
speed or waits out the rest of the quota period, and the mean over a period is what a worker's
rate sees; the median over blocks keeps other processes' bursts out.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from testbed.planner.partition import Chain
from testbed.spec.experiment import Spec

_FLOAT = 4  # bytes per activation element (float32)
_LABEL = 8  # bytes per label (int64), sent with every activation
# Per-worker memory the partitioner adds to each stage: a TensorFlow worker process with its
# gRPC server, before any stage weights. Measured as the RSS of an idle stage worker (see
# docs/partition.md); a stage that reads the dataset holds MNIST's arrays on top.
WORKER_BYTES = 420 * 2**20
_OPTIMIZER_COPIES = 4  # weight, gradient, Adam's two moments


@dataclass(frozen=True)
class ChainTimes:
    """Measured seconds (see the module docstring); wire_s_per_byte: transport CPU per byte."""

    units: tuple[str, ...]
    unit_s: tuple[float, ...]
    sg_s: tuple[float, ...]
    stage_s: float
    wire_s_per_byte: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ChainTimes:
        return cls(tuple(raw["units"]), tuple(raw["unit_s"]), tuple(raw["sg_s"]),
                   float(raw["stage_s"]), float(raw.get("wire_s_per_byte", 0.0)))


@dataclass(frozen=True)
class ChainSizes:
    """Per unit: activation bytes per step after it, memory; per split point: SG memory."""

    units: tuple[str, ...]
    out_bytes: tuple[float, ...]
    memory_bytes: tuple[float, ...]
    sg_memory_bytes: tuple[float, ...]


def chain_sizes(spec: Spec) -> ChainSizes:
    """Sizes from the built model at the spec's width and batch: every unit as its own stage."""
    from testbed.planner.split_profile import build

    stages, sgs, _ = build(spec, _all_units(spec)[:-1])
    batch = spec.training.batch_size
    out, memory = [], []
    for s in stages:
        act = batch * math.prod(s.output_shape) * _FLOAT
        out.append(act + batch * _LABEL)
        # weights x optimizer copies; the output and its gradient kept for the step
        memory.append(s.model.count_params() * _FLOAT * _OPTIMIZER_COPIES + 2 * act)
    sg_memory = [sg.count_params() * _FLOAT * _OPTIMIZER_COPIES + 2 * (o - batch * _LABEL)
                 for sg, o in zip(sgs, out, strict=False)]
    return ChainSizes(tuple(s.units[0] for s in stages), tuple(out[:-1]), tuple(memory),
                      tuple(sg_memory))


def chain_of(sizes: ChainSizes, times: ChainTimes, worker_bytes: float = WORKER_BYTES) -> Chain:
    """The partitioner's chain from the model's sizes and a profile of the same model."""
    if sizes.units != times.units:
        raise ValueError(f"profile units {list(times.units)} do not match the model's "
                         f"{list(sizes.units)}; expected a profile of the same model")
    return Chain(sizes.units, times.unit_s, sizes.out_bytes, times.sg_s, sizes.memory_bytes,
                 sizes.sg_memory_bytes, times.stage_s, worker_bytes, times.wire_s_per_byte)


def _all_units(spec: Spec) -> list[str]:
    from testbed.models import get_model

    return get_model(spec.model.name).unit_names()


def mean_time(fn: Callable[[], object], min_s: float = 0.5, blocks: int = 5,
              block_s: float = 0.1, warmup: int = 2) -> float:
    """Seconds per call: the median over `blocks` (and at least `min_s`) of block means, each
    block running calls for at least `block_s` (a CPU-quota period), so quota throttling is
    averaged in while a burst of load from other processes is voted out."""
    for _ in range(warmup):
        fn()
    means: list[float] = []
    start = time.perf_counter()
    while len(means) < blocks or time.perf_counter() - start < min_s:
        reps, t0 = 0, time.perf_counter()
        while reps == 0 or time.perf_counter() - t0 < block_s:
            fn()
            reps += 1
        means.append((time.perf_counter() - t0) / reps)
    return statistics.median(means)


def marginal_time(body: Callable[[], Any], min_s: float = 0.5, k: int = 8,
                  k_max: int = 1024) -> float:
    """Seconds one more run of `body` (graph code returning a scalar tensor) adds inside a graph
    call: (T_k - T_1) / (k - 1), with k multiplied by 4 until the k runs cost at least as much
    as the call itself (T_k >= 2 T_1) or k reaches k_max."""
    import tensorflow as tf

    @tf.function
    def repeat(n: tf.Tensor) -> tf.Tensor:
        total = body()
        for _ in tf.range(n - 1):
            total += body()
        return total

    def timed(n: int) -> float:
        count = tf.constant(n)
        return mean_time(lambda: repeat(count).numpy(), min_s)

    once = timed(1)
    while True:
        many = timed(k)
        if many >= 2 * once or k >= k_max:
            return max((many - once) / (k - 1), 0.0)
        k = min(4 * k, k_max)


def profile_chain(spec: Spec, min_s: float = 0.5, wire: bool = True) -> ChainTimes:
    """Time every unit of spec's model as its own sg stage (see the module docstring)."""
    import tensorflow as tf

    from testbed.algorithms.sg import synthetic_gradient
    from testbed.planner.split_profile import build, sg_step_fns, unit_body

    names = _all_units(spec)
    stages, sgs, classes = build(spec, names[:-1])
    batch, scale = spec.training.batch_size, spec.algorithm.sg.grad_scale
    tiny = tf.zeros((1,))
    call = mean_time(_numpy(tf.function(lambda: tiny + 1.0)), min_s)
    unit_s, sg_s = [], []
    for s in stages:
        last = s.index == len(stages) - 1
        unit_s.append(marginal_time(unit_body(s, last, batch), min_s))
        if last:
            continue
        sg = sgs[s.index]
        _, update = sg_step_fns(s, sg, last, batch, classes, scale)
        assert update is not None
        h = tf.random.normal((batch, *s.output_shape))
        y1h = tf.one_hot(tf.zeros((batch,), tf.int32), classes)
        predict = tf.function(lambda sg=sg, h=h: synthetic_gradient(sg, h, y1h))
        t_predict = mean_time(_numpy(predict), min_s)
        sg_s.append(max(t_predict - call, 0.0) + mean_time(update, min_s))
    whole, _, _ = build(spec, [])
    step, _ = sg_step_fns(whole[0], None, True, batch, classes, scale)
    fixed = step_overhead(unit_s, mean_time(step, min_s), call)
    wire_cost = wire_s_per_byte(min_s) if wire else 0.0
    return ChainTimes(tuple(names), tuple(unit_s), tuple(sg_s), fixed, wire_cost)


def step_overhead(unit_s: list[float], whole_s: float, call_s: float) -> float:
    """The fixed seconds of one stage step: the whole model stepped as one stage less what its
    units add, never below an empty graph call."""
    return max(whole_s - sum(unit_s), call_s)


def wire_s_per_byte(min_s: float = 0.5, shape: tuple[int, ...] = (64, 32, 32, 32)) -> float:
    """CPU seconds per byte at one end of a stage message: activations sent over loopback gRPC
    through the runtime's own peer, serde and servicer, both ends in this process, so the
    process's CPU per message is one send plus one receive (halved per end)."""
    import functools
    import os
    import threading
    from pathlib import Path

    import numpy as np

    from testbed.runtime.peers import StagePeer
    from testbed.runtime.stage_service import StageNode, StageServicer, register_servicer
    from testbed.runtime.store import BoundedBuffer
    from testbed.runtime.wire import grpc_util
    from testbed.runtime.wire.serde import Activation
    from testbed.runtime.wire.tensors import TensorSpec
    from testbed.runtime.worker_metrics import WorkerMetrics

    metrics = WorkerMetrics(Path(os.devnull), {"worker": "profile"}, 0.0, warmup=1)
    node = StageNode("stage", (1,), metrics, TensorSpec("float32", (None, *shape[1:])), None,
                     BoundedBuffer(2, "block"))
    server = grpc_util.start_server(functools.partial(register_servicer, StageServicer(node)),
                                    max_workers=4)
    inputs = node.inputs
    assert inputs is not None
    drain = threading.Thread(target=lambda: [None for _ in iter(inputs.get, None)], daemon=True)
    drain.start()
    peer = StagePeer("downstream", f"127.0.0.1:{server.port}", 60.0, metrics)
    h = np.random.default_rng(0).random(shape, dtype=np.float32)
    labels = np.zeros(shape[0], np.int64)
    try:
        cpu = _cpu_time(lambda: peer.forward(Activation(0, 0, h, labels)), min_s)
    finally:
        peer.close()
        inputs.close()
        server.stop(grace_s=0.5)
    return cpu / (2 * (h.nbytes + labels.nbytes))


def _cpu_time(fn: Callable[[], object], min_s: float, warmup: int = 3) -> float:
    """Process CPU seconds per call (all threads), over at least `min_s` of wall time."""
    for _ in range(warmup):
        fn()
    reps, wall, cpu = 0, time.perf_counter(), time.process_time()
    while reps < 5 or time.perf_counter() - wall < min_s:
        fn()
        reps += 1
    return (time.process_time() - cpu) / reps


def _numpy(fn: Callable[[], Any]) -> Callable[[], None]:
    return lambda: fn().numpy()
