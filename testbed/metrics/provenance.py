"""What made a result: commit, command line, package versions, host facts and load, made portable.

Every result the testbed writes (a run's summary.json, every results/bench/*.json) carries a
`provenance` block from `start()` + `finish()`, and passes through `portable()`, which rewrites
machine paths relative to the project (or to $TESTBED_RESULTS, or ~) so that no committed result
names the machine it ran on. `absolute_paths()` finds any that are left.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from testbed.paths import PROJECT_ROOT, results_root

PACKAGES = ("tensorflow", "keras", "numpy", "grpcio", "protobuf")
_DISTRIBUTIONS = {"tensorflow": ("tensorflow", "tensorflow-cpu")}  # the first one installed
_MACHINE_PATH = re.compile(r"(?<![\w.~$])/(?:home|root|tmp|work|opt|mnt|srv|var|Users|private)/\S*")
UNKNOWN = "unknown"
_NOT_CODE = (":(exclude)results", ":(exclude)docs", ":(exclude)*.md")


def git_state(root: Path = PROJECT_ROOT) -> dict[str, Any]:
    """{"commit": HEAD's sha, "dirty": whether tracked or untracked files differ}; results/
    (outputs: a benchmark run after another finds its JSON changed), docs/ and Markdown files
    do not count. Unknown (None) outside a git checkout, e.g. the package in a container image."""
    try:
        commit = _git(root, "rev-parse", "HEAD")
        dirty = bool(_git(root, "status", "--porcelain", "--", ".", *_NOT_CODE))
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": dirty}


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                          check=True, timeout=30).stdout.strip()  # fmt: skip


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages that decide a result's numbers, and Python's."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        out[name] = None
        for dist in _DISTRIBUTIONS.get(name, (name,)):
            try:
                out[name] = metadata.version(dist)
                break
            except metadata.PackageNotFoundError:
                continue
    return out


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str | None:
    """The first 'model name' in /proc/cpuinfo (None where there is none)."""
    try:
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                return value.strip()
    except OSError:
        pass
    return None


def host_facts() -> dict[str, Any]:
    """What about the machine shapes timings: cores, CPU model, architecture, kernel."""
    return {"cores": os.cpu_count(), "cpu_model": cpu_model(), "machine": platform.machine(),
            "kernel": platform.release(), "system": platform.system()}  # fmt: skip


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def start(command: str | None = None) -> dict[str, Any]:
    """The provenance block as a result begins: argv is what actually ran; `command`, where
    given, the canonical command that re-makes the result (e.g. `make bench NAME=pipeline`)."""
    return {
        **git_state(), **({"command": command} if command else {}),
        "argv": [_portable_arg(a) for a in sys.argv],
        "versions": package_versions(), "host": host_facts(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "started_unix": time.time(),
        "load_start": load_average(),
    }  # fmt: skip


def finish(block: dict[str, Any]) -> dict[str, Any]:
    """The block with the load average and wall time at the end added (a new dict)."""
    wall = time.time() - block["started_unix"]
    return {**block, "load_end": load_average(), "wall_s": round(wall, 1)}


def unknown(note: str) -> dict[str, Any]:
    """The block for a result that was not re-run after provenance existed: nothing is known
    but what `note` says."""
    return {"commit": UNKNOWN, "dirty": None, "command": None, "note": note}


def _portable_arg(arg: str) -> str:
    """An argument made portable; a path still absolute (a script outside the project) is cut
    to '.../<its name>'."""
    arg = portable_text(arg)
    return f".../{Path(arg).name}" if absolute_paths(arg) else arg


def _prefixes() -> list[tuple[str, str]]:
    """(absolute prefix, portable replacement), the longest first."""
    pairs = [(str(PROJECT_ROOT), ".")]
    results = results_root().resolve()
    if not results.is_relative_to(PROJECT_ROOT):
        pairs.append((str(results), "$TESTBED_RESULTS"))
    pairs.append((str(Path.home()), "~"))
    return sorted(pairs, key=lambda p: len(p[0]), reverse=True)


def portable_text(text: str, prefixes: list[tuple[str, str]] | None = None) -> str:
    """`text` with every machine prefix replaced: '<root>/results/x' -> 'results/x'."""
    for prefix, repl in prefixes if prefixes is not None else _prefixes():
        if prefix in ("", "/"):
            continue
        text = text.replace(prefix + "/", "" if repl == "." else repl + "/")
        text = re.sub(re.escape(prefix) + r"(?![\w.-])", repl, text)
    return text


def portable(obj: Any, prefixes: list[tuple[str, str]] | None = None) -> Any:
    """A JSON-like value with every string made portable (keys too)."""
    prefixes = prefixes if prefixes is not None else _prefixes()
    if isinstance(obj, str):
        return portable_text(obj, prefixes)
    if isinstance(obj, Path):
        return portable_text(str(obj), prefixes)
    if isinstance(obj, dict):
        return {portable(k, prefixes): portable(v, prefixes) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [portable(v, prefixes) for v in obj]
    return obj


def absolute_paths(obj: Any) -> list[str]:
    """Every machine path (/home/..., /root/..., /tmp/..., /work/..., ...) left in `obj`."""
    if isinstance(obj, str):
        return _MACHINE_PATH.findall(obj)
    if isinstance(obj, dict):
        return [p for k, v in obj.items() for p in absolute_paths(k) + absolute_paths(v)]
    if isinstance(obj, list | tuple):
        return [p for v in obj for p in absolute_paths(v)]
    return []
