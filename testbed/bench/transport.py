"""Benchmark `transport`: CPU and wall time per Forward message over loopback gRPC, by size.

A client process sends activations to a StageService server process (the runtime's own
StagePeer, serde and servicer) and both processes' CPU time is read per message. Each size runs
twice: with the default glibc allocator settings and with the workers' WORKER_ENV, which keeps
multi-MB buffers in the heap instead of mmapping (and page-faulting through) fresh memory for
every copy. A third variant, "raw-grpc", sends the same number of bytes as a plain bytes payload
to a handler that drops it (no protobuf, no validation, no store), with the workers'
environment: the floor of any Python gRPC transport on this host, beside the runtime's path.
Ratios within one run; the machine's load is recorded.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

N_MESSAGES, WARMUP = 100, 10
SIZES = {"0.4 MB": (128, 784), "3.2 MB": (128, 14, 14, 32), "12.8 MB": (128, 14, 14, 128)}
ALLOCATORS = ("default", "worker")
VARIANTS = (*ALLOCATORS, "raw-grpc")  # raw-grpc: plain bytes, the worker allocator
_RAW_METHOD = "/testbed.bench.Raw/Send"


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def serve(rank: int) -> None:
    """Serve StageService on an OS-chosen port for float32 activations of `rank` dimensions,
    print the port, drain inputs until stdin closes."""
    import threading

    from testbed.runtime.stage_service import StageNode, StageServicer, register_servicer
    from testbed.runtime.store import BoundedBuffer
    from testbed.runtime.wire import grpc_util
    from testbed.runtime.wire.serde import TensorSpec
    from testbed.runtime.worker_metrics import WorkerMetrics

    metrics = WorkerMetrics(Path(os.devnull), {"worker": "server"}, 0.0, warmup=1)
    node = StageNode("stage", (1,), metrics, TensorSpec("float32", (None,) * rank),
                     None, BoundedBuffer(2, "block"))
    register = functools.partial(register_servicer, StageServicer(node))
    server = grpc_util.start_server(register, max_workers=8)
    assert node.inputs is not None
    threading.Thread(target=lambda: [None for _ in iter(node.inputs.get, None)],
                     daemon=True).start()
    print(server.port, flush=True)
    sys.stdin.read()


def serve_raw() -> None:
    """Serve a method that takes any bytes and answers empty bytes; print the port."""
    import grpc

    from testbed.runtime.wire import grpc_util

    handler = grpc.unary_unary_rpc_method_handler(lambda request, context: b"")
    service, method = _RAW_METHOD.strip("/").split("/")
    server = grpc_util.start_server(
        lambda s: s.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(service, {method: handler}),)
        ), max_workers=8)
    print(server.port, flush=True)
    sys.stdin.read()


def _timed(send: Any, make: Any) -> dict[str, float]:
    """send(make(i)) WARMUP + N_MESSAGES times; CPU and wall per message of the timed ones."""
    for i in range(WARMUP):
        send(make(i))
    cpu, wall = time.process_time(), time.perf_counter()
    for i in range(N_MESSAGES):
        send(make(i))
    return {"client_cpu_ms": (time.process_time() - cpu) / N_MESSAGES * 1e3,
            "wall_ms": (time.perf_counter() - wall) / N_MESSAGES * 1e3}


def client(port: int, shape: tuple[int, ...]) -> dict[str, float]:
    """Send activations through the runtime's StagePeer."""
    import numpy as np

    from testbed.runtime.peers import StagePeer
    from testbed.runtime.wire.serde import Activation
    from testbed.runtime.worker_metrics import WorkerMetrics

    metrics = WorkerMetrics(Path(os.devnull), {"worker": "client"}, 0.0, warmup=1)
    peer = StagePeer("downstream", f"127.0.0.1:{port}", 60.0, metrics)
    h = np.random.default_rng(0).random(shape, dtype=np.float32)
    labels = np.zeros(shape[0], np.int64)
    result = _timed(peer.forward, lambda i: Activation(i, i, h, labels))
    return {**result, "bytes": int(h.nbytes)}


def client_raw(port: int, shape: tuple[int, ...]) -> dict[str, float]:
    """Send the activation's bytes as they are, with the deadline every runtime call has."""
    import numpy as np

    from testbed.runtime.wire import grpc_util

    payload = np.random.default_rng(0).random(shape, dtype=np.float32).tobytes()
    with grpc_util.open_channel(f"127.0.0.1:{port}") as channel:
        send = channel.unary_unary(_RAW_METHOD)
        result = _timed(lambda p: grpc_util.call_with_deadline(send, p, 60.0), lambda i: payload)
    return {**result, "bytes": len(payload)}


def measure(shape: tuple[int, ...], variant: str) -> dict[str, float]:
    """One server and one client process, both with the variant's allocator environment."""
    from testbed.runtime.worker import WORKER_ENV

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    for key in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"):
        env.pop(key, None)
    if variant != "default":
        env.update(WORKER_ENV)
    raw = variant == "raw-grpc"
    serve_args = ["serve-raw"] if raw else ["serve", str(len(shape))]
    server = subprocess.Popen([sys.executable, "-m", __name__, *serve_args], env=env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        before = _cpu_s(server.pid)
        out = subprocess.run([sys.executable, "-m", __name__, "client-raw" if raw else "client",
                              str(port), json.dumps(shape)], env=env, check=True,
                             capture_output=True, text=True).stdout
        result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
        # the server's CPU over the client's whole run (warm-up included): per timed message
        result["server_cpu_ms"] = (_cpu_s(server.pid) - before) / (N_MESSAGES + WARMUP) * 1e3
        return result
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(timeout=30)


def figure(rows: dict[str, dict[str, dict[str, float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.4))
    sizes = list(rows)
    labels = {"default": "default allocator", "worker": "worker allocator",
              "raw-grpc": "raw gRPC bytes (floor)"}
    colours = ("#999", "#2f6db3", "#7a3")
    for k, (variant, colour) in enumerate(zip(VARIANTS, colours, strict=True)):
        xs = [i + (k - 1) * 0.27 for i in range(len(sizes))]
        client = [rows[s][variant]["client_cpu_ms"] for s in sizes]
        server = [rows[s][variant]["server_cpu_ms"] for s in sizes]
        ax.bar(xs, client, 0.25, color=colour, label=f"{labels[variant]}: client")
        ax.bar(xs, server, 0.25, bottom=client, color=colour, alpha=0.5,
               label=f"{labels[variant]}: server")
    ax.set_xticks(range(len(sizes)), sizes)
    ax.set_ylabel("CPU ms per Forward message")
    ax.set_title("loopback gRPC Forward: client + server CPU per message")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(results_root: Path | None = None) -> Path:
    from testbed.bench import bench_dir

    started, load = time.time(), os.getloadavg()
    rows = {name: {v: measure(shape, v) for v in VARIANTS} for name, shape in SIZES.items()}
    keys = ("client_cpu_ms", "server_cpu_ms", "wall_ms")
    ratios = {name: {k: r["default"][k] / r["worker"][k] for k in keys}
              for name, r in rows.items()}
    over_raw = {name: {k: r["worker"][k] / r["raw-grpc"][k] for k in keys}
                for name, r in rows.items()}
    body: dict[str, Any] = {"messages": N_MESSAGES, "rows": rows, "default_over_worker": ratios,
                            "runtime_over_raw_grpc": over_raw,
                            "command": "testbed bench transport", "wall_s": time.time() - started,
                            "loadavg_start": load, "loadavg_end": os.getloadavg()}
    out = bench_dir(results_root)
    (out / "transport.json").write_text(json.dumps(body, indent=2) + "\n")
    figure(rows, out / "transport.png")
    for name, r in rows.items():
        for v in VARIANTS:
            x = r[v]
            print(f"{name:8} {v:8} client {x['client_cpu_ms']:6.2f} ms  server "
                  f"{x['server_cpu_ms']:6.2f} ms  wall {x['wall_ms']:6.2f} ms per message")
    return out / "transport.json"


def _register() -> None:
    from testbed.bench import BENCHES

    BENCHES.register("transport")(main)


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(int(sys.argv[2]))
    elif sys.argv[1] == "serve-raw":
        serve_raw()
    elif sys.argv[1] in ("client", "client-raw"):
        send = client if sys.argv[1] == "client" else client_raw
        print(json.dumps(send(int(sys.argv[2]), tuple(json.loads(sys.argv[3])))))
else:
    _register()
