"""The runtime's own ParameterServer with its evaluator, served on port 0 in this process, for tests."""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from testbed.data import Dataset
from testbed.runtime.parameter_server import Evaluator, ParameterServer
from testbed.runtime.replica import build_replica
from testbed.runtime.wire import grpc_util
from testbed.runtime.wire.proto import parameter_pb2_grpc
from testbed.runtime.worker_metrics import WorkerMetrics
from testbed.spec.experiment import Spec


@contextmanager
def serving(
    spec: Spec, data: Dataset, folder: Path, eval_samples: int | None = None, max_workers: int = 4
) -> Iterator[tuple[ParameterServer, str]]:
    """A ParameterServer for `spec` (evaluating on `eval_samples` of data's test set, None: all;
    metrics and checkpoints in `folder`); yields it and its address, closes it after."""
    metrics = WorkerMetrics(folder / "ps.metrics.jsonl", {"worker": "ps"}, time.time(), 1)
    server = ParameterServer(build_replica(spec), Evaluator(build_replica(spec), data, eval_samples),
                             metrics, folder / "checkpoint", time.time())  # fmt: skip
    register = functools.partial(parameter_pb2_grpc.add_ParameterServiceServicer_to_server, server)
    try:
        with grpc_util.start_server(register, max_workers=max_workers) as running:
            yield server, running.address
    finally:
        server.close()
        metrics.close()
