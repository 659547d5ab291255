"""Benchmark `transport`: CPU and wall time per Forward message over loopback gRPC, by size.

A client process sends activations to a StageService server process (the runtime's own
StagePeer, serde and servicer) and both processes' CPU time is read per message. Each size runs
twice: with the default glibc allocator settings and with the workers' WORKER_ENV, which keeps
multi-MB buffers in the heap instead of mmapping (and page-faulting through) fresh memory for
every copy. A third variant, "raw-grpc", sends the same number of bytes as a plain bytes payload
to a handler that drops it (no protobuf, no validation, no store), with the workers'
environment: the floor of any Python gRPC transport on this host, beside the runtime's path.

CPU comes from nanosecond clocks: the client's process clock, and the server's own process
clock (with its per-thread breakdown from `runtime.thread_cpu`) read over the timed messages
only, at the client's signal. Each cell sends enough messages for a few seconds of work and
runs REPEATS times, the variants interleaved; the JSON gives the median and the range.
Ratios within one run; the provenance block records the machine's load.
"""

from __future__ import annotations

import functools
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

WARMUP, REPEATS = 20, 3
SIZES = {"0.4 MB": (128, 784), "3.2 MB": (128, 14, 14, 32), "12.8 MB": (128, 14, 14, 128)}
MESSAGES = {"0.4 MB": 1000, "3.2 MB": 400, "12.8 MB": 200}  # timed messages per cell
ALLOCATORS = ("default", "worker")
VARIANTS = (*ALLOCATORS, "raw-grpc")  # raw-grpc: plain bytes, the worker allocator
_RAW_METHOD = "/testbed.bench.Raw/Send"


def _answer_cpu_queries() -> None:
    """For every line on stdin print this process's CPU (process clock, per-thread groups);
    return at end of input."""
    from testbed.runtime.thread_cpu import thread_cpu_s

    for _ in sys.stdin:
        print(json.dumps({"process_s": time.process_time(), "threads": thread_cpu_s()}),
              flush=True)


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
    _answer_cpu_queries()


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
    _answer_cpu_queries()


def _timed(send: Any, make: Any, n: int) -> dict[str, float]:
    """send(make(i)) WARMUP times, print "warm" and wait for a line on stdin (the parent reads
    the server's CPU meanwhile), then n timed times; CPU and wall per timed message."""
    for i in range(WARMUP):
        send(make(i))
    print("warm", flush=True)
    sys.stdin.readline()
    cpu, wall = time.process_time(), time.perf_counter()
    for i in range(n):
        send(make(i))
    return {"client_cpu_ms": (time.process_time() - cpu) / n * 1e3,
            "wall_ms": (time.perf_counter() - wall) / n * 1e3, "messages": n}


def client(port: int, shape: tuple[int, ...], n: int) -> dict[str, float]:
    """Send activations through the runtime's StagePeer."""
    import numpy as np

    from testbed.runtime.peers import StagePeer
    from testbed.runtime.wire.serde import Activation
    from testbed.runtime.worker_metrics import WorkerMetrics

    metrics = WorkerMetrics(Path(os.devnull), {"worker": "client"}, 0.0, warmup=1)
    peer = StagePeer("downstream", f"127.0.0.1:{port}", 60.0, metrics)
    h = np.random.default_rng(0).random(shape, dtype=np.float32)
    labels = np.zeros(shape[0], np.int64)
    result = _timed(peer.forward, lambda i: Activation(i, i, h, labels), n)
    return {**result, "bytes": int(h.nbytes)}


def client_raw(port: int, shape: tuple[int, ...], n: int) -> dict[str, float]:
    """Send the activation's bytes as they are, with the deadline every runtime call has."""
    import numpy as np

    from testbed.runtime.wire import grpc_util

    payload = np.random.default_rng(0).random(shape, dtype=np.float32).tobytes()
    with grpc_util.open_channel(f"127.0.0.1:{port}") as channel:
        send = channel.unary_unary(_RAW_METHOD)
        result = _timed(lambda p: grpc_util.call_with_deadline(send, p, 60.0), lambda i: payload, n)
    return {**result, "bytes": len(payload)}


def _ask_cpu(server: subprocess.Popen[str]) -> dict[str, Any]:
    assert server.stdin is not None and server.stdout is not None
    server.stdin.write("cpu\n")
    server.stdin.flush()
    return dict(json.loads(server.stdout.readline()))


def measure(shape: tuple[int, ...], variant: str, n: int) -> dict[str, Any]:
    """One server and one client process, both with the variant's allocator environment; the
    server's CPU over exactly the client's timed messages."""
    from testbed.runtime.workdir import WORKER_ENV

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
        client = subprocess.Popen([sys.executable, "-m", __name__, "client-raw" if raw else
                                   "client", str(port), json.dumps(shape), str(n)], env=env,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        out, before = _timed_window(client, server)
        after = _ask_cpu(server)
        result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        result["server_cpu_ms"] = (after["process_s"] - before["process_s"]) / n * 1e3
        result["server_thread_cpu_ms"] = {
            g: (s - before["threads"].get(g, 0.0)) / n * 1e3 for g, s in after["threads"].items()
            if s - before["threads"].get(g, 0.0) > 0}  # fmt: skip
        return result
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(timeout=30)


def _timed_window(
    client: subprocess.Popen[str], server: subprocess.Popen[str]
) -> tuple[str, dict[str, Any]]:
    """Wait for the client's warm-up, read the server's CPU, let the client time its messages;
    (the client's output, the server's CPU at the start of the timed window)."""
    assert client.stdin is not None and client.stdout is not None
    try:
        if client.stdout.readline().strip() != "warm":
            raise RuntimeError(f"transport client failed during warm-up (exit {client.wait()})")
        before = _ask_cpu(server)
        client.stdin.write("go\n")
        client.stdin.close()
        out = client.stdout.read()
        if client.wait(timeout=600) != 0:
            raise RuntimeError(f"transport client exited with {client.returncode}")
        return out, before
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()


def cell_stats(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median of each number over the repeats, with the range (pure)."""
    keys = ("client_cpu_ms", "server_cpu_ms", "wall_ms")
    out: dict[str, Any] = {k: statistics.median(r[k] for r in runs) for k in keys}
    out.update(bytes=runs[0]["bytes"], messages=runs[0]["messages"], repeats=len(runs),
               range={k: [min(r[k] for r in runs), max(r[k] for r in runs)] for k in keys},
               server_thread_cpu_ms=runs[len(runs) // 2]["server_thread_cpu_ms"])  # fmt: skip
    return out


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
    from testbed.bench import bench_dir, command, write_result
    from testbed.metrics import provenance

    made_by = provenance.start(command("transport"))
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {s: {v: [] for v in VARIANTS} for s in SIZES}
    for _ in range(REPEATS):  # interleaved: drift in the host's speed hits every variant alike
        for name, shape in SIZES.items():
            for v in VARIANTS:
                runs[name][v].append(measure(shape, v, MESSAGES[name]))
    rows = {name: {v: cell_stats(r) for v, r in by_variant.items()}
            for name, by_variant in runs.items()}
    keys = ("client_cpu_ms", "server_cpu_ms", "wall_ms")
    ratios = {name: {k: r["default"][k] / r["worker"][k] for k in keys}
              for name, r in rows.items()}
    over_raw = {name: {k: r["worker"][k] / r["raw-grpc"][k] for k in keys}
                for name, r in rows.items()}
    body: dict[str, Any] = {"messages": MESSAGES, "warmup": WARMUP, "repeats": REPEATS,
                            "rows": rows, "default_over_worker": ratios,
                            "runtime_over_raw_grpc": over_raw, "runs": runs}  # fmt: skip
    out = bench_dir(results_root)
    write_result(out / "transport.json", body, made_by)
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
        print(json.dumps(send(int(sys.argv[2]), tuple(json.loads(sys.argv[3])), int(sys.argv[4]))))
else:
    _register()
