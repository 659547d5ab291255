"""Fake peers for unit tests of the worker loops: real gRPC servers on port 0 in this process.

`LoopWorker` is the worker under test, built as `runtime.roles.run_trainer` builds one (replica,
node with its mode's buffers, StageService) but trained by a direct `roles.train` call. Its
neighbours are `FakeStage`s: the runtime's own StageServicer (so every message is parsed and
validated as a real worker would) whose buffers record what arrives and may answer it at once,
before the Ack. `FakeParameterServer` records weight pushes.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

import grpc
import numpy as np

from testbed.data import Dataset
from testbed.runtime import roles, workdir
from testbed.runtime.config import WorkerConfig
from testbed.runtime.peers import StagePeer
from testbed.runtime.replica import Replica, build_replica
from testbed.runtime.stage_service import StageNode, StageServicer, register_servicer
from testbed.runtime.store import BoundedBuffer
from testbed.runtime.wire import grpc_util, serde_ps
from testbed.runtime.wire.proto import common_pb2, parameter_pb2, parameter_pb2_grpc
from testbed.runtime.wire.serde import Activation, Gradient, Weights
from testbed.runtime.wire.tensors import TensorSpec
from testbed.runtime.worker_metrics import WorkerMetrics
from testbed.spec.experiment import Spec

T = TypeVar("T")


class Recorder(BoundedBuffer[T], Generic[T]):
    """A buffer that never fills: keeps every item in arrival order and calls `on_put(item)`
    (on the RPC thread, before the sender gets its Ack)."""

    def __init__(self, on_put: Callable[[T], None] | None = None) -> None:
        super().__init__(1)
        self.items: list[T] = []
        self.on_put = on_put
        self._lock = threading.Lock()

    def put(self, item: T, timeout: float | None = None) -> bool:
        with self._lock:
            self.items.append(item)
        if self.on_put is not None:
            self.on_put(item)
        return True


def _metrics(path: Path, name: str) -> WorkerMetrics:
    return WorkerMetrics(path, {"worker": name}, time.time(), warmup=1)


class FakeStage:
    """A neighbouring stage worker that records what it receives (and may answer it).

    in_spec: what a Forward must carry (None: this fake takes no activations); grad_spec: what a
    Backward must carry; section_specs: kt-sections' per-section (input, target) specs.
    """

    def __init__(
        self,
        folder: Path,
        name: str,
        in_spec: TensorSpec | None = None,
        grad_spec: TensorSpec | None = None,
        on_forward: Callable[[Activation], None] | None = None,
        on_backward: Callable[[Gradient], None] | None = None,
        section_specs: dict[int, tuple[TensorSpec, TensorSpec]] | None = None,
    ) -> None:
        self.metrics = _metrics(folder / f"{name}.metrics.jsonl", name)
        self.forwards: Recorder[Activation] = Recorder(on_forward)
        self.backwards: Recorder[Gradient] = Recorder(on_backward)
        takes_input = in_spec is not None or section_specs is not None
        self.node = StageNode(
            "stage", (), self.metrics, in_spec or TensorSpec("float32", (None,)), grad_spec,
            self.forwards if takes_input else None, self.backwards if grad_spec else None,
            section_specs=section_specs,
        )
        register = functools.partial(register_servicer, StageServicer(self.node))
        self.server = grpc_util.start_server(register)
        self.address = self.server.address

    def close(self) -> None:
        self.server.stop(grace_s=0.1)
        self.metrics.close()


class FakeParameterServer(parameter_pb2_grpc.ParameterServiceServicer):
    """Records every PushWeights (decoded by serde_ps); other calls are not implemented."""

    def __init__(self) -> None:
        self.pushed: list[Weights] = []
        self._lock = threading.Lock()
        register = functools.partial(
            parameter_pb2_grpc.add_ParameterServiceServicer_to_server, self
        )
        self.server = grpc_util.start_server(register)
        self.address = self.server.address

    def PushWeights(  # noqa: N802 - name fixed by the generated servicer
        self, request: parameter_pb2.WeightSet, context: grpc.ServicerContext
    ) -> common_pb2.Ack:
        w = serde_ps.weights_from_message(request)
        with self._lock:
            self.pushed.append(w)
        return common_pb2.Ack(id=w.version)

    def latest(self, stage_id: int) -> Weights:
        """The newest weights pushed for a stage."""
        mine = [w for w in self.pushed if w.stage_id == stage_id]
        if not mine:
            raise AssertionError(f"no weights pushed for stage {stage_id}")
        return max(mine, key=lambda w: w.version)

    def close(self) -> None:
        self.server.stop(grace_s=0.1)


class LoopWorker:
    """The worker under test: replica, node (its mode's buffers) and StageService on port 0."""

    def __init__(
        self,
        spec: Spec,
        folder: Path,
        name: str = "worker",
        role: str = "stage",
        stage_ids: tuple[int, ...] = (),
        data: Dataset | None = None,
        replica_index: int = 0,
        replica: Replica | None = None,
    ) -> None:
        self.cfg = WorkerConfig(
            name=name, role=role, run_id="test", spec=spec, stage_ids=stage_ids,
            replica_index=replica_index, workdir=folder, t0=time.time(),
        )
        self.replica = replica or build_replica(spec)
        self.data = data
        self.metrics = WorkerMetrics(
            self.cfg.path(workdir.METRICS), {"worker": name}, self.cfg.t0, warmup=1,
            batch=spec.training.batch_size,
        )
        self.node = roles.build_node(self.cfg, self.replica, self.metrics)
        register = functools.partial(register_servicer, StageServicer(self.node))
        self.server = grpc_util.start_server(register)
        self.address = self.server.address

    def train(self, peers: dict[str, str]) -> int:
        """Run the mode's loop for this role to the step budget, then finish; the version."""
        return roles.train(self.cfg, self.node, self.replica, self.data, peers)

    def peer(self, role: str = "upstream") -> StagePeer:
        """A client that sends to this worker as its `role` neighbour would."""
        return StagePeer(role, self.address, 30.0, _metrics(
            self.cfg.workdir / f"to-{self.cfg.name}-{role}.metrics.jsonl", role))

    def close(self) -> None:
        for buf in (self.node.inputs, self.node.grads):
            if buf is not None:
                buf.close()
        self.server.stop(grace_s=0.1)
        self.metrics.close()


class Feeder:
    """Sends activations to a worker in order from a thread, as its upstream neighbour would
    (each send waits while the worker's store is full); join() re-raises a failed send."""

    def __init__(self, worker: LoopWorker, messages: list[Activation]) -> None:
        self.error: BaseException | None = None
        self._peer = worker.peer("upstream")
        self._thread = threading.Thread(target=self._run, args=(messages,), daemon=True)
        self._thread.start()

    def _run(self, messages: list[Activation]) -> None:
        try:
            for msg in messages:
                self._peer.forward(msg)
        except BaseException as err:  # noqa: BLE001 - re-raised by join()
            self.error = err

    def join(self, timeout_s: float = 30.0) -> None:
        self._thread.join(timeout_s)
        self._peer.close()
        if self.error is not None:
            raise self.error


def activations(shape: tuple[int, ...], steps: int, batch: int) -> list[Activation]:
    """`steps` batches of random activations of `shape` with random labels, numbered (batch id
    and step) from 1, the last one final: what an upstream stage would send."""
    rng = np.random.default_rng(7)
    return [Activation(k, k, rng.random((batch, *shape), np.float32),
                       rng.integers(0, 10, batch).astype(np.int64), final=k == steps)
            for k in range(1, steps + 1)]  # fmt: skip
