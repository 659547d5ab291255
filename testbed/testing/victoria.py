"""A real VictoriaMetrics server for tests: start, stop, restart, and read points back."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BINARY = "victoria-metrics"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that the kernel just handed out as free."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def binary() -> str | None:
    """Path of the victoria-metrics binary, or None when it is not installed."""
    return shutil.which(BINARY)


@contextmanager
def local_victoria(workdir: Path, timeout_s: float = 15.0) -> Iterator[str]:
    """A server on a free loopback port for a benchmark or test; yields its URL; always stopped."""
    if binary() is None:
        raise SystemExit(
            "no server: set INFLUX_URL, or install victoria-metrics "
            "(Debian: apt-get install victoria-metrics)"
        )
    workdir.mkdir(parents=True, exist_ok=True)
    server = Victoria(workdir / "vm", free_port(), workdir / "victoria.log")
    server.start(timeout_s)
    try:
        yield server.url
    finally:
        server.stop(timeout_s)


class Victoria:
    """One victoria-metrics process on a fixed loopback port and storage directory."""

    def __init__(self, storage: Path, port: int, log_path: Path) -> None:
        self.storage = storage
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 15.0) -> None:
        """Start the server and poll /health until it answers OK."""
        exe = binary()
        if exe is None:
            raise RuntimeError(f"{BINARY} not found on PATH")
        cmd = [
            exe,
            "-storageDataPath",
            str(self.storage),
            "-httpListenAddr",
            f"127.0.0.1:{self.port}",
            "-loggerLevel",
            "WARN",
        ]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{BINARY} exited with {self.proc.returncode}: {self.log()}")
            if self.healthy():
                return
            time.sleep(0.02)  # poll interval, not a readiness guess
        raise RuntimeError(f"{BINARY} not healthy within {timeout_s} s: {self.log()}")

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM (graceful: storage is flushed to disk) and wait for exit."""
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=1) as r:
                return bool(r.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-2000:]

    def _get(self, path: str) -> str:
        with urllib.request.urlopen(self.url + path, timeout=5) as r:
            return str(r.read().decode())

    def export(self, measurement: str) -> list[dict[str, object]]:
        """All series of a measurement: {"metric": labels, "values": [...], "timestamps": [...]}."""
        self._get("/internal/force_flush")
        match = urllib.parse.quote(f'{{__name__=~"{measurement}_.*"}}')
        body = self._get(f"/api/v1/export?match[]={match}")
        return [json.loads(line) for line in body.splitlines() if line.strip()]

    def samples(self, measurement: str, field: str) -> list[tuple[int, float, dict[str, str]]]:
        """(timestamp ms, value, labels) of one field, sorted by time."""
        out = []
        for series in self.export(measurement):
            labels = dict(series["metric"])  # type: ignore[call-overload]
            if labels.pop("__name__") != f"{measurement}_{field}":
                continue
            for ts, value in zip(series["timestamps"], series["values"], strict=True):  # type: ignore[call-overload]
                out.append((int(ts), float(value), labels))
        return sorted(out, key=lambda s: s[0])

    def wait_samples(
        self, measurement: str, field: str, count: int, timeout_s: float = 15.0
    ) -> list[tuple[int, float, dict[str, str]]]:
        """Poll until at least count samples are readable (ingestion is asynchronous)."""
        deadline = time.monotonic() + timeout_s
        while True:
            got = self.samples(measurement, field)
            if len(got) >= count or time.monotonic() > deadline:
                return got
            time.sleep(0.05)  # poll interval

    def counter(self, name: str, label_fragment: str, timeout_s: float = 10.0) -> float:
        """A /metrics counter, read from a page rendered after this call began.

        VictoriaMetrics caches its /metrics page for about a second; a page is
        known fresh once its own count of /metrics requests has moved on.
        """
        first = _metric(self._get("/metrics"), "vm_http_requests_total", '"/metrics"')
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            page = self._get("/metrics")
            if _metric(page, "vm_http_requests_total", '"/metrics"') > first:
                return _metric(page, name, label_fragment)
            time.sleep(0.05)  # poll interval
        raise TimeoutError(f"/metrics page not refreshed within {timeout_s} s")


def _metric(page: str, name: str, label_fragment: str) -> float:
    for line in page.splitlines():
        if line.startswith(name + "{") and label_fragment in line:
            return float(line.rsplit(" ", 1)[1])
    raise KeyError(f"no /metrics line {name}{{...{label_fragment}...}}")
