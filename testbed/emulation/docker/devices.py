"""How one device becomes a container: caps, labels, mounts, GPUs, as Docker SDK keyword arguments.

Pure functions over a `ResolvedDevice` (no engine needed), so the mapping
from the spec to `containers.run(...)` is tested in the fast tier. Caps are
spelled as ``docker run`` spells them: ``--cpus`` (nano_cpus), ``--memory``
with swap equal to memory (no swap beyond the cap), NET_ADMIN for tc inside.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import testbed
from testbed.emulation.docker.images import CONTAINER_PACKAGE_ROOT, CONTAINER_PYTHON
from testbed.emulation.profiles import ResolvedDevice

RUN_LABEL = "testbed.run"
DEVICE_LABEL = "testbed.device"
KIND_LABEL = "testbed.kind"
IDLE_COMMAND = ["sleep", "infinity"]
HOST_PACKAGE = Path(testbed.__file__).resolve().parent
CONTAINER_PACKAGE = f"{CONTAINER_PACKAGE_ROOT}/testbed"
SYSTEM_DIRS = (Path("/usr"), Path("/bin"), Path("/etc"), Path("/proc"), Path("/sys"), Path("/dev"))


def labels(run_id: str, kind: str, device: str | None = None) -> dict[str, str]:
    """Labels on everything a run creates; cleanup finds resources by RUN_LABEL."""
    out = {RUN_LABEL: run_id, KIND_LABEL: kind}
    if device is not None:
        out[DEVICE_LABEL] = device
    return out


def data_dir() -> Path:
    """The dataset cache the worker reads: $TESTBED_DATA, else ~/.cache/testbed/data.

    Mirrors `testbed.data.cache.data_dir` without importing the data layer
    (emulation knows nothing of datasets); it is mounted at the same path.
    """
    env = os.environ.get("TESTBED_DATA", "").strip()
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("testbed")) / "data"


def results_root() -> Path:
    """Where run directories live: $TESTBED_RESULTS, else the repository's results/.

    Mirrors `testbed.metrics.run_dir.default_results_root` (emulation does not import the
    metrics layer); mounted by default so worker configs and ready files are seen both sides.
    """
    env = os.environ.get("TESTBED_RESULTS", "").strip()
    return Path(env).expanduser() if env else HOST_PACKAGE.parent / "results"


def hidden_paths(argv: list[str], mounts: Mapping[str, dict[str, str]]) -> list[str]:
    """Absolute host paths in argv that exist here but are under no bind mount (not in the image's
    view of the host). Paths into the host's package are mapped by `container_argv`, not listed."""
    seen = [Path(m["bind"]) for m in mounts.values()] + [HOST_PACKAGE, *SYSTEM_DIRS]
    return [
        arg
        for arg in argv
        if Path(arg).is_absolute()
        and Path(arg).exists()
        and not any(Path(arg).is_relative_to(root) for root in seen)
    ]


def clamp_cpus(
    devices: Mapping[str, ResolvedDevice], engine_cpus: int
) -> dict[str, ResolvedDevice]:
    """Docker refuses --cpus above the engine's CPU count: cap there, and say so in the notes."""
    out = {}
    for name, device in devices.items():
        if device.cpus is not None and device.cpus > engine_cpus:
            note = (
                f"device {name!r} asks for {device.cpus:g} CPUs but the engine has "
                f"{engine_cpus}; capped at {engine_cpus}"
            )
            device = replace(device, cpus=float(engine_cpus), notes=device.notes + (note,))
        out[name] = device
    return out


def volumes(paths: Iterable[str | Path], source: bool = False) -> dict[str, dict[str, str]]:
    """Bind mounts at the same paths inside (read-write); the package read-only when `source`."""
    out = {str(Path(p).resolve()): {"bind": str(Path(p).resolve()), "mode": "rw"} for p in paths}
    if source:
        out[str(HOST_PACKAGE)] = {"bind": CONTAINER_PACKAGE, "mode": "ro"}
    return out


def container_options(
    device: ResolvedDevice,
    *,
    run_id: str,
    name: str,
    image: str,
    network: str,
    mounts: Mapping[str, dict[str, str]],
    gpu_ids: list[int],
) -> dict[str, Any]:
    """Keyword arguments for `client.containers.run` that realise the device."""
    options: dict[str, Any] = {
        "image": image,
        "command": IDLE_COMMAND,
        "name": name,
        "hostname": device.name,
        "detach": True,
        "init": True,  # reaps orphans of exec'd processes
        "labels": labels(run_id, "device", device.name),
        "network": network,
        "cap_add": ["NET_ADMIN"],
        "volumes": dict(mounts),
        "environment": {"TESTBED_DEVICE": device.name, "TESTBED_RUN_ID": run_id},
    }
    if device.cpus is not None:
        options["nano_cpus"] = round(device.cpus * 1e9)
    if device.memory_bytes is not None:
        options["mem_limit"] = device.memory_bytes
        options["memswap_limit"] = device.memory_bytes
    if gpu_ids:
        import docker.types

        options["device_requests"] = [
            docker.types.DeviceRequest(device_ids=[str(i) for i in gpu_ids], capabilities=[["gpu"]])
        ]
    return options


def container_argv(argv: list[str]) -> list[str]:
    """Host command -> the same command in the image.

    The host interpreter becomes the image's ``python3`` and paths inside the
    host's testbed package become the image's copy, so callers written for the
    local backend (``[sys.executable, "-m", "testbed.emulation.agents.probe_agent", ...]``,
    ``[sys.executable, "-m", "testbed.runtime.worker", cfg]``) run unchanged.
    """
    python = {sys.executable, os.path.realpath(sys.executable)}
    out = []
    for i, arg in enumerate(argv):
        if i == 0 and (arg in python or os.path.realpath(arg) in python):
            out.append(CONTAINER_PYTHON)
        elif arg.startswith(f"{HOST_PACKAGE}{os.sep}"):
            out.append(CONTAINER_PACKAGE + arg[len(str(HOST_PACKAGE)) :])
        else:
            out.append(arg)
    return out


HOST_ONLY_VARS = frozenset(
    [
        "PATH",
        "HOME",
        "PWD",
        "OLDPWD",
        "SHELL",
        "USER",
        "LOGNAME",
        "HOSTNAME",
        "TMPDIR",
        "PYTHONPATH",
        "PYTHONHOME",
        "PYTHONSTARTUP",
        "PYTHONUSERBASE",
        "PYTHONEXECUTABLE",
        "VIRTUAL_ENV",
        "LD_LIBRARY_PATH",
        "LD_PRELOAD",
    ]
)
HOST_ONLY_PREFIXES = ("PYENV_", "CONDA_", "XDG_", "SSH_", "DOCKER_", "VIRTUAL_ENV_")


def container_env(env: Mapping[str, str]) -> dict[str, str]:
    """`env` without the variables that describe the host's process, not the program's.

    Callers written for the local backend pass ``{**os.environ, ...}``; inside the image the
    host's PATH, HOME or VIRTUAL_ENV would hide the image's venv and home.
    """
    return {
        key: value
        for key, value in env.items()
        if key not in HOST_ONLY_VARS and not key.startswith(HOST_ONLY_PREFIXES)
    }


def exec_user() -> str:
    """Spawned processes run as the caller's uid:gid, so files in bind mounts stay theirs."""
    return f"{os.getuid()}:{os.getgid()}"
