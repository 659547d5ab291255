"""Micro-benchmark: cost of InfluxSink.write() on the calling thread, live server and outage."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from testbed.bench import command, write_result
from testbed.metrics import provenance
from testbed.metrics.influx import InfluxConfig, InfluxSink
from testbed.metrics.sink import Point
from testbed.testing.victoria import free_port, local_victoria


def _measure(
    config: InfluxConfig, run_dir: Path, n: int, close_timeout_s: float = 30.0
) -> dict[str, float | int]:
    """Write n points one by one, timing each write() call; then close and time that."""
    base = {"run": "bench", "experiment": "bench", "mode": "bp"}
    sink = InfluxSink.from_config(config, run_dir, base, request_timeout_s=2.0)
    t0 = time.time_ns()
    points = [
        Point("train", {"loss": 1.0 / (i + 1), "step": i}, {"stage": "0"}, t0 + i * 1000)
        for i in range(n)
    ]
    costs_ns = []
    clock = time.perf_counter_ns
    cpu_all, cpu_caller = time.process_time(), time.thread_time()
    start = clock()
    for p in points:
        before = clock()
        sink.write(p)
        costs_ns.append(clock() - before)
    enqueue_s = (clock() - start) / 1e9
    close_start = time.perf_counter()
    counts = sink.close(timeout_s=close_timeout_s)
    close_s = time.perf_counter() - close_start
    # CPU the sink's thread spent (encoding, HTTP, spool): process minus this thread.
    background_cpu_s = (time.process_time() - cpu_all) - (time.thread_time() - cpu_caller)
    costs_us = sorted(c / 1000 for c in costs_ns)
    return {
        "points": n,
        "write_us_mean": statistics.fmean(costs_us),
        "write_us_p50": costs_us[len(costs_us) // 2],
        "write_us_p99": costs_us[int(len(costs_us) * 0.99)],
        "write_us_max": costs_us[-1],
        "enqueue_all_s": enqueue_s,
        "close_s": close_s,
        "background_cpu_us_per_point": background_cpu_s / n * 1e6,
        **counts,
    }


def _point_construction_us(n: int) -> float:
    """Cost of building and validating one Point (paid by the caller, sink or not)."""
    t0 = time.time_ns()
    start = time.perf_counter()
    for i in range(n):
        Point("train", {"loss": 0.5, "step": i}, {"stage": "0"}, t0 + i)
    return (time.perf_counter() - start) / n * 1e6


def main(out_json: str | Path, n: int = 20_000) -> dict[str, object]:
    """Run the benchmark against INFLUX_URL, else a local victoria-metrics; write JSON."""
    made_by = provenance.start(command("influx-write"))
    with tempfile.TemporaryDirectory(prefix="bench-influx-") as tmp:
        work = Path(tmp)
        config = InfluxConfig.from_env()
        if config is None:
            with local_victoria(work) as url:
                live = _measure(InfluxConfig(url, "", "bench", "bench"), work / "live", n)
                server = "victoria-metrics (local)"
        else:
            live = _measure(config, work / "live", n)
            server = config.url
        down = InfluxConfig(f"http://127.0.0.1:{free_port()}", "", "bench", "bench")
        outage = _measure(down, work / "outage", n, close_timeout_s=1.0)
    result: dict[str, object] = {
        "benchmark": "influx_sink_write",
        "server": server,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "point_construction_us": _point_construction_us(n),
        "live": live,
        "outage": outage,
    }
    write_result(Path(out_json), result, made_by)
    return result


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m testbed.bench.influx_write OUT.json")
    print(json.dumps(main(sys.argv[1]), indent=2))
