"""The dp-async replica loop against a real parameter server on port 0: the server applies
exactly the step budget, and one replica reproduces in-process backprop step for step."""

from __future__ import annotations

import threading
import time
from itertools import islice
from pathlib import Path

import numpy as np

from testbed.data.batches import batch_indices
from testbed.runtime.peers import ParameterClient
from testbed.spec.experiment import Spec
from testbed.spec.load import parse_spec
from testbed.testing.datasets import random_images
from testbed.testing.fake_peers import LoopWorker
from testbed.testing.parameter_server import serving
from testbed.testing.specs import stage_spec
from testbed.training.session import Session, fetch_batch


def _spec(replicas: int, steps: int) -> Spec:
    return parse_spec(stage_spec("dp-async", steps, job={"mode": "dp-async", "replicas": replicas}))


def test_one_replica_is_in_process_backprop_step_for_step(tmp_path: Path) -> None:
    spec, data = _spec(1, 3), random_images()
    with serving(spec, data, tmp_path, eval_samples=16, max_workers=8) as (server, address):
        worker = LoopWorker(spec, tmp_path, "replica0", role="replica", data=data)
        try:
            assert worker.train({"ps": address}) == 3
        finally:
            worker.close()
        client = ParameterClient(address, 10.0, None)
        last = client.pull_model()  # the run is over: no step, and no weights sent for nothing
        status = client.status()
        client.close()
        final = [s.model.get_weights() for s in server.replica.stages]
    assert status.version == 3
    assert (last.version, last.ticket, len(last.stages)) == (3, 0, 0)
    session = Session.build(spec, data)
    step = session.compile_step()
    for idx in islice(batch_indices(len(data.y_train), 8, spec.training.seed), 3):
        step(*fetch_batch(data, idx))
    for served, stage in zip(final, session.stages, strict=True):
        for a, b in zip(served, stage.model.get_weights(), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_two_replicas_stop_when_the_server_has_applied_exactly_the_budget(tmp_path: Path) -> None:
    spec, data = _spec(2, 10), random_images()
    steps: dict[str, int] = {}
    with serving(spec, data, tmp_path, eval_samples=16, max_workers=8) as (_, address):
        workers = [LoopWorker(spec, tmp_path, f"replica{k}", role="replica", data=data,
                              replica_index=k) for k in range(2)]

        def run(w: LoopWorker) -> None:
            steps[w.cfg.name] = w.train({"ps": address})

        threads = [threading.Thread(target=run, args=(w,)) for w in workers]
        try:
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
        finally:
            for w in workers:
                w.close()
        client = ParameterClient(address, 10.0, None)
        deadline = time.monotonic() + 30
        while not (status := client.status()).evaluations and time.monotonic() < deadline:
            time.sleep(0.05)  # poll: the server evaluates on its own thread
        client.close()
    assert set(steps) == {"replica0", "replica1"}, "a replica did not finish"
    assert status.version == 10  # applied exactly the budget, never more
    # every push was applied, refused as stale, or came after the budget (at most one per
    # other replica: each stops at its next pull)
    assert 10 <= sum(steps.values()) <= 10 + status.stale_gradients + 1
    assert all(s > 0 for s in steps.values())
    assert [e.step for e in status.evaluations] == [10]
