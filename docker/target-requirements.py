"""Print requirements.txt resolved for a target architecture: markers evaluated there, not here.

`pip download --platform` evaluates environment markers against the host, so
`tensorflow-cpu ; platform_machine == "x86_64"` would be chosen for an arm64
image too. This script evaluates each line's marker for linux/<arch> and
prints the requirement without it. With ``--gpu`` the TensorFlow pin becomes the CUDA
build (``tensorflow[and-cuda]``, amd64 only). Usage: target-requirements.py ARCH [FILE] [--gpu].
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    from packaging.requirements import Requirement
except ImportError:  # pip vendors packaging; every python3 that can run pip has it
    from pip._vendor.packaging.requirements import Requirement  # type: ignore[no-redef]

MACHINES = {"amd64": "x86_64", "arm64": "aarch64"}


def target_environment(arch: str) -> dict[str, str]:
    if arch not in MACHINES:
        raise SystemExit(f"arch {arch!r} is not supported; expected one of {sorted(MACHINES)}")
    return {
        "platform_machine": MACHINES[arch],
        "sys_platform": "linux",
        "platform_system": "Linux",
        "os_name": "posix",
        "python_version": "3.11",
        "python_full_version": "3.11.2",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
    }


def resolve(lines: list[str], arch: str, gpu: bool = False) -> list[str]:
    env = target_environment(arch)
    if gpu and arch != "amd64":
        raise SystemExit(f"--gpu is for amd64 (tensorflow[and-cuda]); got arch {arch!r}")
    out = []
    for raw in lines:
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("-"):
            raise SystemExit(f"option line {line!r} is not supported; expected plain pins")
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate(env):
            req.marker = None
            if gpu and req.name in ("tensorflow-cpu", "tensorflow"):
                req.name, req.extras = "tensorflow", {"and-cuda"}
            out.append(str(req))
    return out


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--gpu"]
    arch = args[0] if args else "amd64"
    path = Path(args[1] if len(args) > 1 else "requirements.txt")
    print("\n".join(resolve(path.read_text().splitlines(), arch, "--gpu" in sys.argv)))
