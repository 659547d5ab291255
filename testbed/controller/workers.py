"""The controller's handles on running workers: health, start with peers, stop."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

import grpc

from testbed.controller.plan import WorkerPlan
from testbed.modes import get_mode
from testbed.runtime.peers import ParameterClient
from testbed.runtime.wire import grpc_util, serde
from testbed.runtime.wire.proto import common_pb2, stage_pb2_grpc
from testbed.runtime.wire.serde import Health, Resplit, Start, Stop
from testbed.spec.experiment import Spec

_HEALTH_DEADLINE_S = 1.0  # a paused or cut-off worker is noticed within about a second
_LOST_AFTER_S = 5.0


class WorkerFailedError(RuntimeError):
    """A worker died or stopped answering; the message says which, how, and its last stderr."""


class WorkerClients:
    """Stubs for every trainer (StageService) and the parameter server."""

    def __init__(
        self,
        plans: list[WorkerPlan],
        addresses: dict[str, str],
        deadline_s: float,
        lost_after_s: float = _LOST_AFTER_S,
        report: Callable[..., None] | None = None,
    ) -> None:
        """`lost_after_s`: how long a trainer may not answer before it counts as lost;
        `report(event, **fields)` hears when one stops and starts answering again."""
        self.deadline_s, self.lost_after_s = deadline_s, lost_after_s
        self.report = report or (lambda event, **fields: None)
        self.trainers = [p for p in plans if p.role != "ps"]
        self.channels = {p.name: grpc_util.open_channel(addresses[p.name]) for p in self.trainers}
        self.stubs = {n: stage_pb2_grpc.StageServiceStub(c) for n, c in self.channels.items()}
        self.ps = ParameterClient(addresses["ps"], deadline_s, None)
        self._unreachable: dict[str, float] = {}

    def start_all(self, run_id: str, spec: Spec, peers: dict[str, dict[str, str]]) -> None:
        """Start trainers from the last stage to the first, so receivers run before senders."""
        t = spec.training
        mode = "sg" if get_mode(spec.job.mode).receives == "sg" else "bp"
        for p in reversed(self.trainers):
            start = Start(run_id, mode, t.iterations, t.batch_size, t.lr, t.seed, peers[p.name])  # type: ignore[arg-type]
            grpc_util.call_with_deadline(
                self.stubs[p.name].Control,
                serde.control_to_message(start),
                self.deadline_s,
                wait_for_ready=True,
            )

    def health(self, failure: Any) -> dict[str, Health]:
        """Every trainer's health; a trainer unreachable for 5 s is reported as lost."""
        out = {}
        for p in self.trainers:
            try:
                reply = grpc_util.call_with_deadline(
                    self.stubs[p.name].Health, common_pb2.Empty(), _HEALTH_DEADLINE_S
                )
                out[p.name] = serde.health_from_message(reply)
                since = self._unreachable.pop(p.name, None)
                if since is not None:
                    self.report("worker_responsive", worker=p.name,
                                after_s=time.monotonic() - since)  # fmt: skip
            except grpc.RpcError as err:
                failure.check(0.0)  # a death explains it better than the RPC error
                if p.name not in self._unreachable:
                    self._unreachable[p.name] = time.monotonic()
                    self.report("worker_unresponsive", worker=p.name, code=err.code().name)  # type: ignore[attr-defined]
                if time.monotonic() - self._unreachable[p.name] > self.lost_after_s:
                    raise WorkerFailedError(
                        f"worker {p.name!r} unreachable for {self.lost_after_s:.0f} s "
                        f"(job.hang_timeout_s): {err.code().name}"
                    ) from None  # type: ignore[attr-defined]
                out[p.name] = Health(p.role, p.stage_ids, 0, False)
        return out

    def resplit(self, plan: Resplit) -> None:
        """A new split: the parameter server first (pushes and pulls name it), then every
        trainer from the last to the first (stage 0 starts the drain when it hears)."""
        self.ps.resplit(plan)
        msg = serde.control_to_message(plan)
        for p in reversed(self.trainers):
            grpc_util.call_with_deadline(self.stubs[p.name].Control, msg, self.deadline_s)

    def resplit_tick(self, resplitter: Any) -> Callable[[dict[str, Health]], None]:
        """What the monitoring loop runs each poll: the resplitter acting on its requests."""
        return lambda health: resplitter.poll(self.resplit)

    def stop_all(self, reason: str) -> None:
        msg = serde.control_to_message(Stop(reason))
        for stub in self.stubs.values():
            with contextlib.suppress(grpc.RpcError):  # already gone: the supervisor reaps it
                grpc_util.call_with_deadline(stub.Control, msg, _HEALTH_DEADLINE_S)

    def close(self) -> None:
        for c in self.channels.values():
            c.close()
        self.ps.close()

    def __enter__(self) -> WorkerClients:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
