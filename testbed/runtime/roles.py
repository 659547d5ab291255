"""Run one worker role: serve, report ready, wait for Start, train, report, wait for Stop."""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable
from typing import Any

from testbed.algorithms.wire_codec import wire_codecs
from testbed.data import Dataset, load_dataset
from testbed.modes import get_mode, load
from testbed.runtime import workdir
from testbed.runtime.checkpoints import CheckpointStore
from testbed.runtime.config import WorkerConfig
from testbed.runtime.kt_replica import section_specs
from testbed.runtime.parameter_server import Evaluator, ParameterServer
from testbed.runtime.replica import Replica, build_replica, input_spec, output_spec
from testbed.runtime.stage_io import StageIO
from testbed.runtime.stage_service import StageNode, StageServicer, register_servicer
from testbed.runtime.store import BoundedBuffer
from testbed.runtime.wire import grpc_util
from testbed.runtime.wire.proto import parameter_pb2_grpc
from testbed.runtime.worker_metrics import WorkerMetrics

OnReady = Callable[[str], None]
OnSummary = Callable[[dict[str, Any]], None]
_SERVER_THREADS = 8


def warmup_steps(total: int) -> int:
    """Steps excluded from steady-state rates (tracing, first transfers): 10%, 1..20."""
    return max(1, min(20, total // 10))


def advertised(cfg: WorkerConfig, server: grpc_util.RunningServer) -> str:
    host = cfg.advertise_host or server.host
    return f"{host}:{server.port}"


def run_role(cfg: WorkerConfig, on_ready: OnReady, on_summary: OnSummary) -> None:
    """Build this worker's model replica and run its role until stopped."""
    replica = build_replica(cfg.spec)
    tags = {"worker": cfg.name, "role": cfg.role}
    if cfg.stage_ids:
        tags["stage"] = "-".join(str(i) for i in cfg.stage_ids)
    warmup = warmup_steps(cfg.spec.training.iterations)
    batch = cfg.spec.training.batch_size
    metrics = WorkerMetrics(cfg.path(workdir.METRICS), tags, cfg.t0, warmup, batch)

    def ready(address: str) -> None:
        """Record what starting cost this process (the planner's build time), then report."""
        metrics.write("startup", {"cpu_s": time.process_time(), "ready_s": time.time() - cfg.t0})
        on_ready(address)

    try:
        if cfg.role == "ps":
            run_ps(cfg, replica, metrics, ready)
        else:
            run_trainer(cfg, replica, metrics, ready, on_summary)
    finally:
        metrics.close()


def run_ps(cfg: WorkerConfig, replica: Replica, metrics: WorkerMetrics, on_ready: OnReady) -> None:
    """Serve weights, apply dp-async gradients, evaluate complete versions; until SIGTERM."""
    data = load_dataset(cfg.spec.data.dataset)
    concurrent = get_mode(cfg.spec.job.mode).layout == "replicas"  # PS applies while it evaluates
    eval_replica = build_replica(cfg.spec) if concurrent else replica
    evaluator = Evaluator(eval_replica, data, cfg.spec.training.eval_samples)
    t = cfg.spec.training
    states = CheckpointStore(cfg.workdir / workdir.CHECKPOINTS, len(replica.stages),
                             t.checkpoint_keep)  # fmt: skip
    ps = ParameterServer(replica, evaluator, metrics, cfg.workdir / workdir.CHECKPOINT, cfg.t0,
                         states)  # fmt: skip
    states.meta = ps.checkpoint_meta
    if cfg.resume_step:
        ps.resume(cfg.resume_step)
    register = functools.partial(parameter_pb2_grpc.add_ParameterServiceServicer_to_server, ps)
    server = grpc_util.start_server(register, bind=cfg.bind, max_workers=_SERVER_THREADS)
    try:
        on_ready(advertised(cfg, server))
        ps.crashed.wait()  # until SIGTERM raises SystemExit, or evaluation fails
        raise RuntimeError(f"parameter server evaluation failed: {ps.error!r}") from ps.error
    finally:
        server.stop(grace_s=0.5)
        ps.close()


def build_node(cfg: WorkerConfig, replica: Replica, metrics: WorkerMetrics) -> StageNode:
    """Buffers for what this worker receives (its mode's `receives`): activations from upstream,
    gradients or SG targets from below, or the KT teacher's section stream."""
    ids, job = cfg.stage_ids, cfg.spec.job
    mode = get_mode(job.mode)
    node = StageNode(cfg.role, ids, metrics, None, None)
    if cfg.role != "stage" or mode.receives == "nothing":
        return node
    if mode.receives == "kt":  # every held section reads the teacher's stream
        node.section_specs = section_specs(replica.kt.teacher, ids)
        node.in_spec = node.section_specs[ids[0]][0]
        node.inputs = BoundedBuffer(job.store.capacity * len(ids), "block")
        return node
    n, store = len(replica.stages), job.store
    bp, m = mode.receives == "bp", mode.micro_batches(job)
    act_codec, grad_codec = wire_codecs(job.wire)
    if ids[0] > 0:
        node.in_spec = dataclasses.replace(input_spec(replica.stages[ids[0]]), codec=act_codec)
        cap, on_full = (max(store.capacity, m), "block") if bp else (store.capacity, store.on_full)
        node.inputs = BoundedBuffer(cap, on_full)  # type: ignore[arg-type]
    if ids[-1] < n - 1 and mode.receives != "forward":  # local losses: nothing comes back
        node.grad_spec = dataclasses.replace(output_spec(replica.stages[ids[-1]]), codec=grad_codec)
        node.grads = (
            BoundedBuffer(m, "block") if bp else BoundedBuffer(store.target_staleness, "drop")
        )
    return node


def _needs_data(cfg: WorkerConfig) -> bool:
    role = get_mode(cfg.spec.job.mode).data_role
    if role == "stage0":
        return cfg.role == "stage" and cfg.stage_ids[0] == 0
    return cfg.role == role


def run_trainer(
    cfg: WorkerConfig,
    replica: Replica,
    metrics: WorkerMetrics,
    on_ready: OnReady,
    on_summary: OnSummary,
) -> None:
    """A stage worker or dp-async replica: serve StageService, train after Start, then wait."""
    node = build_node(cfg, replica, metrics)
    register = functools.partial(register_servicer, StageServicer(node))
    server = grpc_util.start_server(register, bind=cfg.bind, max_workers=_SERVER_THREADS)
    try:
        data = load_dataset(cfg.spec.data.dataset) if _needs_data(cfg) else None
        on_ready(advertised(cfg, server))
        node.started.wait()
        assert node.start is not None
        version = train(cfg, node, replica, data, dict(node.start.peers))
        node.done = True
        on_summary(worker_summary(cfg, node, version))
        node.stopped.wait()
    finally:
        for buf in (node.inputs, node.grads):
            if buf is not None:
                buf.close()
        server.stop(grace_s=0.5)


def train(
    cfg: WorkerConfig,
    node: StageNode,
    replica: Replica,
    data: Dataset | None,
    peers: dict[str, str],
) -> int:
    """Run the loop this worker's role has in the spec's mode; returns the version reached."""
    mode = get_mode(cfg.spec.job.mode)
    if cfg.role not in mode.loops:
        raise ValueError(f"job.mode {mode.name!r} has no loop for role {cfg.role!r}; "
                         f"expected one of {sorted(mode.loops)}")
    io = StageIO(cfg, node, replica, data, peers)
    try:
        loop = load(mode.loops[cfg.role])(io)
        if cfg.resume_step and cfg.role == "stage":
            io.restore(cfg.resume_step)  # the loop continues from io.start_step
        version = int(loop.run(cfg.spec.training.iterations))
        node.metrics.training_ended()
        loop.finish(version)
        return version
    finally:
        io.close()


def worker_summary(cfg: WorkerConfig, node: StageNode, version: int) -> dict[str, Any]:
    buffers = {
        name: dataclasses.asdict(buf.stats())
        for name, buf in (("inputs", node.inputs), ("grads", node.grads))
        if buf is not None
    }
    return {
        "name": cfg.name,
        "role": cfg.role,
        "stage_ids": list(cfg.stage_ids),
        "version": version,
        "buffers": buffers,
        **node.metrics.summary(),
    }
