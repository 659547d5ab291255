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

The wire codecs (job.wire) run as further variants, each with the workers' allocator: the
same activation sent as fp16, int8 (per tensor, per channel) or fp16 top-10% codes, so a
codec's end-to-end cost per message stands beside fp32's ("worker"). The codec alone is timed
too, in this process on its own thread's clock: encoding a message (serde, what StagePeer
sends) and checking and decoding it (what the servicer does), over enough messages that the
clock's resolution does not matter.
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
CODECS = {  # job.wire codecs, sent with the worker allocator; "worker" is fp32
    "fp16": ("fp16", "per-tensor", None),
    "int8": ("int8", "per-tensor", None),
    "int8-channel": ("int8", "per-channel", None),
    "fp16-top10": ("fp16", "per-tensor", 0.1),
}
VARIANTS = (*ALLOCATORS, "raw-grpc", *CODECS)  # raw-grpc: plain bytes, the worker allocator
CODEC_MESSAGES = {"0.4 MB": 2000, "3.2 MB": 300, "12.8 MB": 80}  # codec-only timing


def codec(variant: str) -> Any:
    """The wire codec a variant sends with (fp32 for the allocator and raw variants)."""
    from testbed.algorithms.wire_codec import RAW, Codec

    return Codec(*CODECS[variant]) if variant in CODECS else RAW
_RAW_METHOD = "/testbed.bench.Raw/Send"


def _answer_cpu_queries() -> None:
    """For every line on stdin print this process's CPU (process clock, per-thread groups);
    return at end of input."""
    from testbed.runtime.thread_cpu import thread_cpu_s

    for _ in sys.stdin:
        print(json.dumps({"process_s": time.process_time(), "threads": thread_cpu_s()}),
              flush=True)


def serve(rank: int, variant: str) -> None:
    """Serve StageService on an OS-chosen port for float32 activations of `rank` dimensions
    sent with the variant's codec, print the port, drain inputs until stdin closes."""
    import threading

    from testbed.runtime.stage_service import StageNode, StageServicer, register_servicer
    from testbed.runtime.store import BoundedBuffer
    from testbed.runtime.wire import grpc_util
    from testbed.runtime.wire.tensors import TensorSpec
    from testbed.runtime.worker_metrics import WorkerMetrics

    metrics = WorkerMetrics(Path(os.devnull), {"worker": "server"}, 0.0, warmup=1)
    node = StageNode("stage", (1,), metrics, TensorSpec("float32", (None,) * rank, codec(variant)),
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


def _activation(shape: tuple[int, ...], i: int = 0) -> Any:
    import numpy as np

    from testbed.runtime.wire.serde import Activation

    h = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    return Activation(i, i, h, np.zeros(shape[0], np.int64))


def client(port: int, shape: tuple[int, ...], n: int, variant: str) -> dict[str, float]:
    """Send activations through the runtime's StagePeer, with the variant's codec."""
    from testbed.algorithms.wire_codec import RAW
    from testbed.runtime.peers import StagePeer
    from testbed.runtime.wire import serde
    from testbed.runtime.wire.serde import Activation
    from testbed.runtime.worker_metrics import WorkerMetrics

    metrics = WorkerMetrics(Path(os.devnull), {"worker": "client"}, 0.0, warmup=1)
    wire = (codec(variant), RAW)
    peer = StagePeer("downstream", f"127.0.0.1:{port}", 60.0, metrics, wire=wire)
    act = _activation(shape)
    result = _timed(peer.forward, lambda i: Activation(i, i, act.h, act.labels), n)
    sent = len(serde.encode_activation(act, wire[0]))
    return {**result, "bytes": int(act.h.nbytes), "message_bytes": sent}


def client_raw(port: int, shape: tuple[int, ...], n: int, variant: str) -> dict[str, float]:
    """Send the activation's bytes as they are, with the deadline every runtime call has."""
    import numpy as np

    from testbed.runtime.wire import grpc_util

    payload = np.random.default_rng(0).random(shape, dtype=np.float32).tobytes()
    with grpc_util.open_channel(f"127.0.0.1:{port}") as channel:
        send = channel.unary_unary(_RAW_METHOD)
        result = _timed(lambda p: grpc_util.call_with_deadline(send, p, 60.0), lambda i: payload, n)
    return {**result, "bytes": len(payload), "message_bytes": len(payload)}


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
    serve_args = ["serve-raw"] if raw else ["serve", str(len(shape)), variant]
    server = subprocess.Popen([sys.executable, "-m", __name__, *serve_args], env=env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        client = subprocess.Popen([sys.executable, "-m", __name__, "client-raw" if raw else
                                   "client", str(port), json.dumps(shape), str(n), variant],
                                  env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  text=True)
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
    out.update(bytes=runs[0]["bytes"], message_bytes=runs[0]["message_bytes"],
               messages=runs[0]["messages"], repeats=len(runs),
               range={k: [min(r[k] for r in runs), max(r[k] for r in runs)] for k in keys},
               server_thread_cpu_ms=runs[len(runs) // 2]["server_thread_cpu_ms"])  # fmt: skip
    return out


def codec_cpu(shape: tuple[int, ...], variant: str, n: int) -> dict[str, float]:
    """This thread's CPU per message to encode an activation with the variant's codec (serde's
    bytes, as StagePeer sends them) and to parse, check and decode it (as the servicer does)."""
    from testbed.runtime.wire import serde
    from testbed.runtime.wire.proto import stage_pb2
    from testbed.runtime.wire.tensors import TensorSpec

    act, c = _activation(shape), codec(variant)
    spec, labels = TensorSpec("float32", (None, *shape[1:]), c), TensorSpec("int64", (None,))
    wire = serde.encode_activation(act, c)

    def decode() -> None:
        msg = serde.parse_message(stage_pb2.ActivationBatch, wire)
        serde.activation_from_message(msg, spec, labels)

    out = {}
    for name, work in (("encode", lambda: serde.encode_activation(act, c)), ("decode", decode)):
        work()
        t = time.thread_time_ns()
        for _ in range(n):
            work()
        out[f"{name}_cpu_ms"] = (time.thread_time_ns() - t) / n / 1e6
    return {**out, "messages": n, "message_bytes": len(wire), "bytes": int(act.h.nbytes)}


def codec_table(shapes: dict[str, tuple[int, ...]]) -> dict[str, dict[str, dict[str, float]]]:
    """Codec-only CPU per message for fp32 ("worker") and every codec, per size."""
    return {name: {v: codec_cpu(shape, v, CODEC_MESSAGES[name]) for v in ("worker", *CODECS)}
            for name, shape in shapes.items()}


_LABELS = {"default": "fp32, default allocator", "worker": "fp32, worker allocator",
           "raw-grpc": "raw gRPC bytes (floor)", "fp16": "fp16", "int8": "int8 per tensor",
           "int8-channel": "int8 per channel", "fp16-top10": "fp16 top-10%"}
_COLOURS = dict(zip(_LABELS, ("#999", "#2f6db3", "#7a3", "#e08a2c", "#b03a2e", "#7d3c98",
                              "#17a589"), strict=True))


def _cpu_bars(ax: Any, rows: dict[str, dict[str, dict[str, float]]], variants: tuple[str, ...],
              title: str) -> None:
    """Client (solid) + server (light) CPU per message, one bar per variant and size."""
    sizes, width = list(rows), 0.8 / len(variants)
    for k, variant in enumerate(variants):
        xs = [i + (k - (len(variants) - 1) / 2) * width for i in range(len(sizes))]
        client = [rows[s][variant]["client_cpu_ms"] for s in sizes]
        server = [rows[s][variant]["server_cpu_ms"] for s in sizes]
        colour = _COLOURS[variant]
        ax.bar(xs, client, width * 0.9, color=colour, label=f"{_LABELS[variant]}: client")
        ax.bar(xs, server, width * 0.9, bottom=client, color=colour, alpha=0.45,
               label=f"{_LABELS[variant]}: server")
    ax.set_xticks(range(len(sizes)), [f"{s} (fp32)" for s in sizes])
    ax.set_ylabel("CPU ms per Forward message")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=6)


def figure(rows: dict[str, dict[str, dict[str, float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 3.8))
    _cpu_bars(left, rows, ("default", "worker", "raw-grpc"),
              "loopback gRPC Forward: client + server CPU per message")
    _cpu_bars(right, rows, ("worker", *CODECS), "the same with job.wire codecs (worker allocator)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _ratios(rows: dict[str, dict[str, dict[str, float]]], top: str, bottom: str,
            keys: tuple[str, ...] = ("client_cpu_ms", "server_cpu_ms", "wall_ms"),
            ) -> dict[str, dict[str, float]]:
    return {name: {k: r[top][k] / r[bottom][k] for k in keys} for name, r in rows.items()}


def main(results_root: Path | None = None) -> Path:
    """CPU and wall time per Forward message over loopback gRPC: sizes, allocators, codecs."""
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
    codecs = codec_table(SIZES)
    cost = ("client_cpu_ms", "server_cpu_ms", "wall_ms", "message_bytes")
    body: dict[str, Any] = {
        "messages": MESSAGES, "warmup": WARMUP, "repeats": REPEATS, "rows": rows,
        "default_over_worker": _ratios(rows, "default", "worker"),
        "runtime_over_raw_grpc": _ratios(rows, "worker", "raw-grpc"),
        "codec_over_fp32": {v: _ratios(rows, v, "worker", cost) for v in CODECS},
        "codec_only": codecs, "codec_messages": CODEC_MESSAGES,
        "codecs": {v: {"precision": c[0], "scale": c[1], "topk": c[2]} for v, c in CODECS.items()},
        "runs": runs,
    }  # fmt: skip
    out = bench_dir(results_root)
    write_result(out / "transport.json", body, made_by)
    figure(rows, out / "transport.png")
    for name, r in rows.items():
        for v in VARIANTS:
            x = r[v]
            print(f"{name:8} {v:12} client {x['client_cpu_ms']:6.2f} ms  server "
                  f"{x['server_cpu_ms']:6.2f} ms  wall {x['wall_ms']:6.2f} ms  "
                  f"{x['message_bytes'] / 1e6:6.3f} MB per message")
        for v, c in codecs[name].items():
            print(f"{name:8} {v:12} codec only: encode {c['encode_cpu_ms']:6.3f} ms  decode "
                  f"{c['decode_cpu_ms']:6.3f} ms per message")
    return out / "transport.json"


def _register() -> None:
    from testbed.bench import BENCHES

    BENCHES.register("transport")(main)


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(int(sys.argv[2]), sys.argv[3])
    elif sys.argv[1] == "serve-raw":
        serve_raw()
    elif sys.argv[1] in ("client", "client-raw"):
        send = client if sys.argv[1] == "client" else client_raw
        shape = tuple(json.loads(sys.argv[3]))
        print(json.dumps(send(int(sys.argv[2]), shape, int(sys.argv[4]), sys.argv[5])))
else:
    _register()
