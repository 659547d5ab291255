"""Print a lock file resolved for a target architecture: markers evaluated there, not here.

`pip download --platform` evaluates environment markers against the host, so
`tensorflow-cpu ; platform_machine == "x86_64"` would be chosen for an arm64 image too. This
script reads a `requirements/*.lock` (pins with `--hash` options, continuation lines), keeps
the requirements whose marker holds on linux/<arch>, and prints each as
`name==version --hash=...` without the marker, so `pip download --require-hashes` fetches
exactly the locked files. Usage: target-requirements.py ARCH LOCK_FILE.
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


def entries(text: str) -> list[str]:
    """The lock's requirement entries, continuation lines joined, comments dropped."""
    out, current = [], ""
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].rstrip() if not raw.lstrip().startswith("--hash") else raw.rstrip()
        if not line.strip():
            continue
        current += " " + line.strip().removesuffix("\\").strip()
        if not line.endswith("\\"):
            out.append(current.strip())
            current = ""
    if current.strip():
        out.append(current.strip())
    return out


def resolve(text: str, arch: str) -> list[str]:
    env = target_environment(arch)
    out = []
    for entry in entries(text):
        if entry.startswith("-") and not entry.startswith("--hash"):
            raise SystemExit(f"option line {entry!r} is not supported; expected pins with hashes")
        spec, *hashes = entry.split(" --hash=")
        req = Requirement(spec)
        if req.marker is None or req.marker.evaluate(env):
            req.marker = None
            out.append(" ".join([str(req), *(f"--hash={h.strip()}" for h in hashes)]))
    return out


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: target-requirements.py ARCH LOCK_FILE")
    print("\n".join(resolve(Path(sys.argv[2]).read_text(), sys.argv[1])))
