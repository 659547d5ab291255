"""What every stage loop shares: its data or input buffer, senders to neighbours and the PS."""

from __future__ import annotations

import time
from collections.abc import Mapping

import numpy as np

from testbed.algorithms.wire_codec import wire_codecs
from testbed.data import Dataset
from testbed.data.batches import BatchSampler
from testbed.modes import get_mode
from testbed.runtime.config import WorkerConfig
from testbed.runtime.outbox import Outbox
from testbed.runtime.peers import ParameterClient, StagePeer
from testbed.runtime.replica import Replica, get_named_weights, stage_state_parts, state_specs
from testbed.runtime.stage_service import StageNode
from testbed.runtime.wire import serde_ps
from testbed.runtime.wire.serde import Activation, Gradient, Weights
from testbed.runtime.wire.tensors import TensorSpec
from testbed.spec.experiment import Spec
from testbed.training import state
from testbed.training.state import SAMPLER_KEY, StageParts

_FLUSH_S = 60.0
_PULL_POLL_S = 0.05


def ps_shaped(spec: Spec) -> bool:
    """Whether traffic to the parameter server crosses the emulated links: when the server
    trains (dp-async), moves units between stages (job.resplit) or is placed on a device; not
    when it only observes from the host."""
    return (get_mode(spec.job.mode).ps_trains or spec.job.resplit is not None
            or "ps" in (spec.placement or {}))


class StageIO:
    """Inputs (dataset or activation store), outboxes (downstream, upstream, PS), weight pushes."""

    def __init__(
        self,
        cfg: WorkerConfig,
        node: StageNode,
        replica: Replica,
        data: Dataset | None,
        peers: Mapping[str, str],
    ) -> None:
        self.cfg, self.node, self.replica, self.data = cfg, node, replica, data
        job, m = cfg.spec.job, node.metrics
        self.wire = wire_codecs(job.wire)
        self._peers = [
            StagePeer(r, peers[r], job.deadline_s, m, wire=self.wire)
            for r in ("downstream", "upstream")
            if r in peers
        ]
        self.ps_client = ParameterClient(peers["ps"], job.deadline_s, m, paced=ps_shaped(cfg.spec))
        # one message waits while one is on the wire: the receiver's store is the buffer, so
        # a link holds at most capacity + 2 batches (bounds the staleness of SG targets)
        self.down = self._outbox("downstream", lambda p: Outbox("downstream", p.forward, 1))
        self.up = self._outbox("upstream", lambda p: Outbox("upstream", p.backward, 1))
        self.ps: Outbox[Weights] = Outbox("ps", self.ps_client.push_weights, len(replica.stages) + 1)
        self.sections = self._section_outboxes(peers)  # kt-sections teacher: stage id -> outbox
        t = cfg.spec.training
        self.sampler = BatchSampler(len(data.y_train), t.batch_size, t.seed) if data else None
        self.state_out: Outbox[Weights] = Outbox("ps-state", self.ps_client.push_state,
                                                 len(replica.stages) + 1)  # fmt: skip
        self.start_step = 0  # where the loop continues from (a checkpoint's step, else 0)
        self.split_epoch = 0  # a re-split moves this worker to the next epoch
        push = job.push_every or t.eval_every
        self.push_every, self.next_push, self.pushed = push, push, 0
        self.state_every = t.checkpoint_interval(distributed=True)
        self.next_state = self.state_every
        m.gauges.update(
            outbox_down=lambda: self.down.depth() if self.down else 0,
            outbox_up=lambda: self.up.depth() if self.up else 0,
            inputs_depth=lambda: node.inputs.stats().depth if node.inputs else 0,
            inputs_dropped=lambda: node.inputs.stats().dropped if node.inputs else 0,
            grads_depth=lambda: node.grads.stats().depth if node.grads else 0,
            grads_dropped=lambda: node.grads.stats().dropped if node.grads else 0,
        )

    def _section_outboxes(self, peers: Mapping[str, str]) -> dict[int, Outbox[Activation]]:
        """One outbox per worker holding student sections (peers 'stage<i>@<worker>')."""
        held: dict[str, tuple[str, list[int]]] = {}
        for key, address in peers.items():
            if key.startswith("stage") and "@" in key:
                index, worker = key[5:].split("@", 1)
                held.setdefault(worker, (address, []))[1].append(int(index))
        out: dict[int, Outbox[Activation]] = {}
        for worker, (address, ids) in held.items():
            peer = StagePeer(worker, address, self.cfg.spec.job.deadline_s, self.node.metrics)
            self._peers.append(peer)
            box: Outbox[Activation] = Outbox(worker, peer.forward, len(ids))
            out.update({i: box for i in ids})
        return out

    def _outbox(self, role: str, make: object) -> Outbox | None:  # type: ignore[type-arg]
        peer = next((p for p in self._peers if p.peer == role), None)
        return make(peer) if peer is not None else None  # type: ignore[operator]

    def batch(self) -> tuple[np.ndarray, np.ndarray]:
        """The next training batch (first stage only), in the in-process order for the seed."""
        if self.data is None:
            raise RuntimeError(
                f"worker {self.cfg.name!r} holds no dataset; only stage 0 reads data"
            )
        assert self.sampler is not None
        idx = next(self.sampler)
        return self.data.x_train[idx], self.data.y_train[idx]

    def next_input(self) -> Activation | None:
        """The next activation from upstream (waiting counts as blocked on input)."""
        assert self.node.inputs is not None
        with self.node.metrics.timer("blocked_input_s"):
            return self.node.inputs.get()

    def next_gradient(self) -> Gradient | None:
        assert self.node.grads is not None
        with self.node.metrics.timer("blocked_grad_s"):
            return self.node.grads.get()

    def send_forward(self, act: Activation) -> None:
        assert self.down is not None
        self.node.metrics.add("blocked_output_s", self.down.put(act))

    def send_section(self, act: Activation) -> None:
        """kt-sections: to the worker holding student section act.stage_id."""
        self.node.metrics.add("blocked_output_s", self.sections[act.stage_id].put(act))

    def send_backward(self, grad: Gradient) -> None:
        assert self.up is not None
        self.node.metrics.add("blocked_output_s", self.up.put(grad))

    def push_weights(self, version: int) -> None:
        """Snapshot this worker's stages and queue them for the PS (once per version)."""
        if version <= self.pushed:
            return
        self.pushed = version
        self.node.metrics.snapshot(version)
        for i in self.node.stage_ids:
            tensors = get_named_weights(self.replica.stages[i].model)
            self.ps.put(Weights(i, version, tensors, self.split_epoch))

    def push_now(self, version: int) -> None:
        """Push this worker's stages at `version` (unless done) and wait until the PS has them."""
        self.push_weights(version)
        self.ps.flush(_FLUSH_S)

    def flush_sends(self) -> None:
        """Wait until every queued message to a neighbour is delivered (outboxes stay open)."""
        for box in (self.down, self.up):
            if box is not None:
                box.flush(_FLUSH_S)

    def pull_stage(self, index: int, version: int, epoch: int,
                   expected: Mapping[str, TensorSpec], timeout_s: float,
                   sg_boundary: int | None = None) -> Weights:
        """Stage `index` of split `epoch` from the PS once every unit of it is at `version`
        (their old owners push them while draining); polls until then. With `sg_boundary`:
        the SG module of that boundary its old owner pushed (push_module) instead."""
        deadline = time.monotonic() + timeout_s
        what = (f"stage {index} of split epoch {epoch}" if sg_boundary is None
                else f"the SG module after unit {sg_boundary}")
        while (w := self.ps_client.pull_weights(index, version, epoch, expected,
                                                sg_boundary)) is None:
            if time.monotonic() > deadline or self.node.stopped.is_set():
                raise RuntimeError(f"{what} not at the parameter server at version {version} "
                                   f"within {timeout_s:.0f} s")
            time.sleep(_PULL_POLL_S)
        return w

    def push_module(self, unit: int, version: int, tensors: dict[str, np.ndarray]) -> None:
        """Queue the SG module (and optimizer) at the boundary after `unit` for the PS, where
        the boundary's new owner pulls it at a re-split; push_now's flush delivers it."""
        self.ps.put(Weights(0, version, tensors, self.split_epoch, sg_boundary=unit))

    def maybe_push(self, version: int) -> None:
        """Push the weights at the first step at or past each multiple of push_every, and the
        full state (a checkpoint) at each multiple of training.checkpoint_every."""
        if version >= self.next_push:
            self.push_weights(self.next_push)
            self.next_push += self.push_every * (1 + (version - self.next_push) // self.push_every)
        if self.state_every and version >= self.next_state:
            self.push_state(self.next_state)
            self.next_state += self.state_every * (1 + (version - self.next_state) // self.state_every)

    def _parts(self, stage_id: int) -> dict[int, StageParts]:
        return stage_state_parts(self.replica, [stage_id])

    def push_state(self, version: int) -> None:
        """Snapshot this worker's stages' full state (and the data position) for the PS."""
        for i in self.node.stage_ids:
            arrays = state.capture(self._parts(i))
            if i == 0 and self.sampler is not None:
                arrays[SAMPLER_KEY] = self.sampler.encode()
            self.node.metrics.add("blocked_output_s", self.state_out.put(Weights(i, version, arrays)))

    def restore(self, step: int) -> None:
        """Continue from the checkpoint at `step`: pull every held stage's state from the PS."""
        for i in self.node.stage_ids:
            msg = self.ps_client.pull_state(i, step)
            w = serde_ps.weights_from_message(msg, state_specs(self.replica, i))
            if w.version != step:
                raise RuntimeError(f"the parameter server holds the checkpoint at step {w.version}; "
                                   f"expected {step}")  # fmt: skip
            state.restore(self._parts(i), w.tensors)
            if i == 0 and self.sampler is not None:
                self.sampler.decode_into(w.tensors[SAMPLER_KEY])
        self.start_step = self.pushed = step
        self.next_push = (step // self.push_every + 1) * self.push_every
        if self.state_every:
            self.next_state = (step // self.state_every + 1) * self.state_every

    def finish(self, version: int) -> None:
        """Push the final weights and deliver everything queued."""
        self.push_weights(version)
        self.flush()

    def flush(self) -> None:
        """Deliver everything queued in the outboxes, then close them."""
        unique = {id(b): b for b in self.sections.values()}
        for box in (self.down, self.up, self.ps, self.state_out, *unique.values()):
            if box is not None:
                box.close(_FLUSH_S)

    def close(self) -> None:
        for p in self._peers:
            p.close()
        self.ps_client.close()
