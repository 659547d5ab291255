"""Benchmarks: commands that write results/bench/<name>.json and a figure (never timed tests).

Every benchmark writes its JSON through `write_result`, which adds the provenance block
(`testbed.metrics.provenance`: commit, command, versions, host, load at start and end) and
makes every path portable; `docs/benchmarks.md` says how to add one.
"""

import fnmatch
import json
import os
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from testbed.registry import Registry

T = TypeVar("T")

BENCHES: Registry[Callable[[Path], Path]] = Registry("benchmark")


def bench_dir(results_root: Path | None = None) -> Path:
    from testbed.metrics.run_dir import default_results_root

    out = (results_root or default_results_root()) / "bench"
    out.mkdir(parents=True, exist_ok=True)
    return out


def like_a_worker() -> None:
    """Give this process, and every process it starts, the workers' allocator settings
    (`runtime.workdir.WORKER_ENV`): a stage profiled here then steps as fast as in a worker
    (four-layer's first stage: 52 ms instead of 59 with glibc's defaults), so a profile bound
    is a bound of what the workers can do."""
    import ctypes
    import ctypes.util

    from testbed.runtime.workdir import WORKER_ENV

    os.environ.update(WORKER_ENV)
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's mallopt parameters
    libc.mallopt(m_mmap_threshold, int(WORKER_ENV["MALLOC_MMAP_THRESHOLD_"]))
    libc.mallopt(m_trim_threshold, int(WORKER_ENV["MALLOC_TRIM_THRESHOLD_"]))


def selected(cells: list[T], cell_id: Callable[[T], str], only: str | None) -> list[T]:
    """The cells whose id matches one of `only`'s comma-separated shell patterns (all of them
    without `only`): TESTBED_BENCH_ONLY's chunk of a long benchmark."""
    if not only:
        return cells
    patterns = [p.strip() for p in only.split(",") if p.strip()]
    return [c for c in cells if any(fnmatch.fnmatchcase(cell_id(c), p) for p in patterns)]


def command(name: str) -> str:
    """The canonical command that re-makes benchmark `name`'s result (with the cell selection
    TESTBED_BENCH_ONLY when one is set: a chunk of a long benchmark)."""
    only = os.environ.get("TESTBED_BENCH_ONLY")
    return f"TESTBED_BENCH_ONLY={shlex.quote(only)} make bench NAME={name}" if only else f"make bench NAME={name}"


def write_result(out: Path, body: dict[str, Any], provenance: dict[str, Any]) -> Path:
    """Write `out` (results/bench/<name>.json): `body` with the finished `provenance` (from
    `provenance.start`), every machine path made portable. A body that would still name a
    machine path is kept as `<out>.rejected` (not a result: nothing measured is lost) and
    refused with a ValueError naming the paths."""
    from testbed.metrics import provenance as prov

    doc = prov.portable({**body, "provenance": prov.finish(provenance)})
    text = json.dumps(doc, indent=2, default=str) + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    left = prov.absolute_paths(doc)
    if left:
        rejected = out.with_name(out.name + ".rejected")
        rejected.write_text(text)
        raise ValueError(f"{out.name}: the result names machine paths {sorted(set(left))[:5]}; "
                         f"fix the benchmark (it is kept as {rejected.name})")
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, out)
    return out
