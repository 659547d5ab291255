"""Docker tier, arm64: the jetson device's worker image under QEMU answers a health call and trains.

Needs testbed-worker:arm64 (docker/build-images.sh --arch arm64 --role worker) and QEMU binfmt
on an x86 engine. Slow by nature: TensorFlow under user-mode emulation imports in tens of
seconds. Skipped with the reason when the engine or image is missing (failed when
TESTBED_REQUIRE_DOCKER=1).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from testbed.emulation.config import ClusterSpec
from testbed.emulation.docker import cleanup as docker_cleanup
from testbed.emulation.docker.backend import (
    DockerBackend,
    DockerCluster,
    DockerUnavailable,
    connect,
)

pytestmark = [pytest.mark.docker, pytest.mark.slow]

WORKER_ARM64 = "testbed-worker:arm64"
READY_TIMEOUT_S = 600
STEP = """
import json, platform, time
t0 = time.monotonic()
import numpy as np, tensorflow as tf, keras, testbed
imported = time.monotonic() - t0
from testbed.algorithms.bp import last_stage_step
from testbed.models.stages import build_stages
from testbed.models.zoo import get_model
keras.utils.set_random_seed(0)
last = build_stages(get_model("four-layer"), (28, 28, 1))[-1]
x = tf.random.normal((16, *last.input_shape))
y = tf.constant(np.arange(16) % 10)
t1 = time.monotonic()
loss, logits, g_in = last_stage_step(last.model, keras.optimizers.Adam(1e-3), x, y)
print(json.dumps({"arch": platform.machine(), "loss": float(loss), "grad_shape": list(g_in.shape),
                  "import_s": imported, "step_s": time.monotonic() - t1}))
"""


@pytest.fixture(scope="module")
def engine() -> Any:
    reason = None
    try:
        client = connect(timeout_s=30)
    except DockerUnavailable as error:
        reason = str(error)
    else:
        import docker.errors

        try:
            client.images.get(WORKER_ARM64)
        except docker.errors.ImageNotFound:
            reason = f"image {WORKER_ARM64} missing: run docker/build-images.sh --arch arm64"
    if reason:
        if os.environ.get("TESTBED_REQUIRE_DOCKER") == "1":
            pytest.fail(f"{reason} (TESTBED_REQUIRE_DOCKER=1)")
        pytest.skip(reason)
    return client


def _stage_worker_config(handle: DockerCluster, workdir: Path) -> Path:
    """A WorkerConfig for the last stage of the four-layer SG smoke spec (needs no dataset)."""
    from testbed.models.stages import resolve_split
    from testbed.models.zoo import get_model
    from testbed.runtime.config import WorkerConfig, write_config
    from testbed.spec.load import load_spec

    spec = load_spec("four-layer-sg", "smoke")
    last = len(resolve_split(get_model(spec.model.name), spec.model.split_after)) - 1
    cfg = WorkerConfig(
        name="jetson-stage", role="stage", run_id=handle.run_id, spec=spec, stage_ids=(last,),
        bind="0.0.0.0:0", advertise_host=handle.address("jetson"), workdir=workdir, t0=time.time(),
    )  # fmt: skip
    path = workdir / "jetson-stage.json"
    write_config(cfg, path)
    return path


def _wait_ready(proc: subprocess.Popen[Any], ready: Path) -> str:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not ready.exists():
        if proc.poll() is not None:
            pytest.fail(f"arm64 worker exited {proc.returncode}: {proc.communicate()[1][-2000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"arm64 worker not ready within {READY_TIMEOUT_S} s")
        time.sleep(0.5)
    return str(json.loads(ready.read_text())["address"])


def _health(address: str) -> Any:
    from testbed.runtime.wire import grpc_util, serde
    from testbed.runtime.wire.proto import common_pb2, stage_pb2_grpc

    channel = grpc_util.open_channel(address)
    try:
        stub = stage_pb2_grpc.StageServiceStub(channel)
        return serde.health_from_message(
            grpc_util.call_with_deadline(stub.Health, common_pb2.Empty(), 60.0)
        )
    finally:
        channel.close()


def test_jetson_worker_under_qemu_answers_health_and_trains_a_step(
    engine: Any, tmp_path: Path
) -> None:
    run_id = f"test-docker-arm64-{os.getpid()}"
    spec = ClusterSpec.model_validate(
        {"backend": "docker", "devices": [{"name": "jetson", "profile": "jetson"}]}
    )
    backend = DockerBackend(run_id, mounts=[tmp_path], client=engine, mount_source=True)
    with backend.up(spec) as handle:
        assert (
            any("QEMU" in note for note in handle.fidelity.notes) or handle.engine_arch == "arm64"
        )
        config = _stage_worker_config(handle, tmp_path)
        started = time.monotonic()
        worker = handle.spawn("jetson", [sys.executable, "-m", "testbed.runtime.worker", str(config)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
        address = _wait_ready(worker, tmp_path / "jetson-stage.ready.json")
        health = _health(address)
        print(f"arm64 worker ready after {time.monotonic() - started:.0f} s at {address}: {health}")
        assert health.role == "stage" and health.step == 0 and not health.done
        step = handle.spawn("jetson", [sys.executable, "-c", STEP], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
        out, err = step.communicate(timeout=READY_TIMEOUT_S)
        assert step.returncode == 0, err[-2000:]
        result = json.loads(out.strip().splitlines()[-1])
        print(f"arm64 training step: {result}")
        assert result["arch"] == "aarch64" and result["loss"] > 0
        assert result["grad_shape"][0] == 16
    assert docker_cleanup.find(run_id, engine) == ([], [])
