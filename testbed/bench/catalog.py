"""Registers every benchmark with BENCHES (imported by `testbed bench`)."""

from __future__ import annotations

from pathlib import Path

from testbed.bench import BENCHES, bench_dir
from testbed.bench import accuracy as _accuracy  # noqa: F401  (registers "accuracy")
from testbed.bench import devices as _devices  # noqa: F401  (registers "devices")
from testbed.bench import edge_pipeline as _edge_pipeline  # noqa: F401  (registers "edge-pipeline")
from testbed.bench import kt as _kt  # noqa: F401  (registers "kt")
from testbed.bench import kt_edge as _kt_edge  # noqa: F401  (registers "kt-edge")
from testbed.bench import metrics as _metrics  # noqa: F401  (registers "metrics")
from testbed.bench import mutation as _mutation  # noqa: F401  (registers "mutation")
from testbed.bench import partition as _partition  # noqa: F401  (registers "partition*")
from testbed.bench import pipeline as _pipeline  # noqa: F401  (registers "pipeline")
from testbed.bench import planner as _planner  # noqa: F401  (registers "planner", "planner-quick", "planner-rescore")
from testbed.bench import planner_noise as _planner_noise  # noqa: F401  (registers "planner-noise", "planner-noise-100")
from testbed.bench import sg_reset as _sg_reset  # noqa: F401  (registers "sg-reset")
from testbed.bench import time_to_accuracy as _tta  # noqa: F401  (registers "time-to-accuracy")
from testbed.bench import transport as _transport  # noqa: F401  (registers "transport")
from testbed.bench import wire as _wire  # noqa: F401  (registers "wire")


@BENCHES.register("faults")
def faults(results_root: Path | None = None) -> Path:
    """Injected faults on 4 edge devices under restart: detection, recovery, steps lost, leftovers."""
    from testbed.bench.faults import main

    return main(results_root)


@BENCHES.register("cli")
def cli(results_root: Path | None = None) -> Path:
    """Wall time of `testbed --help`, list, validate and --dry-run in a fresh interpreter."""
    from testbed.bench.cli import main

    return main(results_root)


@BENCHES.register("dashboard")
def dashboard(results_root: Path | None = None) -> Path:
    """Dashboard page/API latency on a synthetic run with 100k metric points."""
    from testbed.bench.dashboard import main

    out = bench_dir(results_root) / "dashboard.json"
    main(out)
    return out


@BENCHES.register("influx-write")
def influx_write(results_root: Path | None = None) -> Path:
    """Cost of InfluxSink.write() on the calling thread against a live VictoriaMetrics."""
    from testbed.bench.influx_write import main

    out = bench_dir(results_root) / "influx_write.json"
    main(out)
    return out


@BENCHES.register("links")
def links(results_root: Path | None = None) -> Path:
    """Achieved vs configured rate at 10 Mbit, 100 Mbit and 1 Gbit on the local backend."""
    from testbed.bench.links import main

    out = bench_dir(results_root) / "links.json"
    main(out)
    return out
