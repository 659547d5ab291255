"""Benchmark `transport`: CPU and wall time per Forward message over loopback gRPC, by size.

A client process sends activations to a StageService server process (the runtime's own
StagePeer, serde and servicer) and both processes' CPU time is read per message. Each size runs
twice: with the default glibc allocator settings and with the workers' WORKER_ENV, which keeps
multi-MB buffers in the heap instead of mmapping (and page-faulting through) fresh memory for
every copy. Ratios within one run; the machine's load is recorded.
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


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def serve(rank: int) -> None:
    """Serve StageService on an OS-chosen port for float32 activations of `rank` dimensions,
    print the port, drain inputs until stdin closes."""
    import threading

    from testbed.runtime import grpc_util
    from testbed.runtime.serde import TensorSpec
    from testbed.runtime.stage_service import StageNode, StageServicer, register_servicer
    from testbed.runtime.store import BoundedBuffer
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


def client(port: int, shape: tuple[int, ...]) -> dict[str, float]:
    """Send WARMUP + N_MESSAGES activations; CPU and wall per message of the timed ones."""
    import numpy as np

    from testbed.runtime.peers import StagePeer
    from testbed.runtime.serde import Activation
    from testbed.runtime.worker_metrics import WorkerMetrics

    metrics = WorkerMetrics(Path(os.devnull), {"worker": "client"}, 0.0, warmup=1)
    peer = StagePeer("downstream", f"127.0.0.1:{port}", 60.0, metrics)
    h = np.random.default_rng(0).random(shape, dtype=np.float32)
    labels = np.zeros(shape[0], np.int64)
    for i in range(WARMUP):
        peer.forward(Activation(i, i, h, labels))
    cpu, wall = time.process_time(), time.perf_counter()
    for i in range(N_MESSAGES):
        peer.forward(Activation(i, i, h, labels))
    return {"client_cpu_ms": (time.process_time() - cpu) / N_MESSAGES * 1e3,
            "wall_ms": (time.perf_counter() - wall) / N_MESSAGES * 1e3,
            "bytes": int(h.nbytes)}


def measure(shape: tuple[int, ...], allocator: str) -> dict[str, float]:
    """One server and one client process, both with the allocator's environment."""
    from testbed.runtime.worker import WORKER_ENV

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    for key in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"):
        env.pop(key, None)
    if allocator == "worker":
        env.update(WORKER_ENV)
    server = subprocess.Popen([sys.executable, "-m", __name__, "serve", str(len(shape))], env=env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        before = _cpu_s(server.pid)
        out = subprocess.run([sys.executable, "-m", __name__, "client", str(port),
                              json.dumps(shape)], env=env, check=True, capture_output=True,
                             text=True).stdout
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
    for k, (alloc, colour) in enumerate(zip(ALLOCATORS, ("#999", "#2f6db3"), strict=True)):
        xs = [i + (k - 0.5) * 0.38 for i in range(len(sizes))]
        client = [rows[s][alloc]["client_cpu_ms"] for s in sizes]
        server = [rows[s][alloc]["server_cpu_ms"] for s in sizes]
        ax.bar(xs, client, 0.36, color=colour, label=f"{alloc} allocator: client")
        ax.bar(xs, server, 0.36, bottom=client, color=colour, alpha=0.5,
               label=f"{alloc} allocator: server")
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
    rows = {name: {a: measure(shape, a) for a in ALLOCATORS} for name, shape in SIZES.items()}
    ratios = {name: {k: r["default"][k] / r["worker"][k]
                     for k in ("client_cpu_ms", "server_cpu_ms", "wall_ms")}
              for name, r in rows.items()}
    body: dict[str, Any] = {"messages": N_MESSAGES, "rows": rows, "default_over_worker": ratios,
                            "command": "testbed bench transport", "wall_s": time.time() - started,
                            "loadavg_start": load, "loadavg_end": os.getloadavg()}
    out = bench_dir(results_root)
    (out / "transport.json").write_text(json.dumps(body, indent=2) + "\n")
    figure(rows, out / "transport.png")
    for name, r in rows.items():
        for a in ALLOCATORS:
            x = r[a]
            print(f"{name:8} {a:8} client {x['client_cpu_ms']:6.2f} ms  server "
                  f"{x['server_cpu_ms']:6.2f} ms  wall {x['wall_ms']:6.2f} ms per message")
    return out / "transport.json"


def _register() -> None:
    from testbed.bench import BENCHES

    BENCHES.register("transport")(main)


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(int(sys.argv[2]))
    elif sys.argv[1] == "client":
        print(json.dumps(client(int(sys.argv[2]), tuple(json.loads(sys.argv[3])))))
else:
    _register()
