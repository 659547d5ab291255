"""Fidelity probe: bulk TCP between two device namespaces, achieved vs configured rate."""

from __future__ import annotations

import json
import statistics
import subprocess
from typing import Any

from testbed.emulation.agents import agent_argv
from testbed.emulation.fidelity import DEGRADED_NO_ROOT, WARN_TOLERANCE, ProbeResult
from testbed.emulation.handle import ClusterHandle

AGENT = agent_argv("probe_agent")
MIN_BYTES = 256 * 1024


def probe_bytes(rate_bps: int, seconds: float) -> int:
    """A transfer that lasts about `seconds` at `rate_bps` (at least 256 KiB)."""
    if rate_bps <= 0 or seconds <= 0:
        raise ValueError(f"rate {rate_bps} bit/s and seconds {seconds} must be positive")
    return max(int(rate_bps / 8 * seconds), MIN_BYTES)


def probe_link(
    handle: ClusterHandle,
    src: str,
    dst: str,
    *,
    seconds: float = 1.5,
    timeout_s: float = 60.0,
    tolerance: float = WARN_TOLERANCE,
) -> ProbeResult:
    """Send ~`seconds` of bulk TCP from src to dst; record and return achieved vs configured."""
    _require_shaped(handle, src, dst)
    configured = handle.path_rate_bps(src, dst)
    if configured is None:
        raise ValueError(f"path {src}->{dst} has no configured rate; expected a shaped link")
    nbytes = str(probe_bytes(configured, seconds))
    report = _exchange(handle, ("sink", dst), ("send", src), [nbytes], timeout_s)
    result = ProbeResult(
        src=src,
        dst=dst,
        configured_bps=configured,
        payload_bytes=report["bytes"],
        duration_s=report["seconds"],
        mss=report["mss"],
        mtu=report["mtu"],
    )
    handle.fidelity.record(result, tolerance)
    return result


def probe_all(handle: ClusterHandle, *, seconds: float = 1.0) -> list[ProbeResult]:
    """Probe every link with a rate once: a device's upload to another device, a pair a->b."""
    results = []
    for key, settings in sorted(handle.links.items()):
        if settings.rate_bps is None:
            continue
        if len(key) == 2:
            src, dst = key
        else:
            src, dst = key[0], _least_shaped_peer(handle, key[0])
        results.append(probe_link(handle, src, dst, seconds=seconds))
    return results


def _least_shaped_peer(handle: ClusterHandle, device: str) -> str:
    """The other device whose path from `device` is limited by `device`'s own link."""
    own = handle.configured_rate_bps(device)
    peers = [name for name in handle.devices if name != device]
    if not peers:
        raise ValueError(f"cannot probe device {device!r}: the cluster has no other device")
    return max(peers, key=lambda p: (handle.path_rate_bps(device, p) == own, p))


def probe_rtt(handle: ClusterHandle, src: str, dst: str, count: int = 5) -> float:
    """Median TCP round trip (seconds) of one-byte messages from src to dst and back."""
    _require_shaped(handle, src, dst)
    report = _exchange(handle, ("echo", dst), ("ping", src), [str(count)], timeout_s=60.0)
    return float(statistics.median(report["rtts"]))


def _require_shaped(handle: ClusterHandle, src: str, dst: str) -> None:
    if handle.fidelity.level == DEGRADED_NO_ROOT:
        raise RuntimeError(
            f"cannot probe {src}->{dst}: fidelity is {handle.fidelity.level!r}, "
            "links are not shaped by the kernel"
        )


def _exchange(
    handle: ClusterHandle,
    server: tuple[str, str],
    client: tuple[str, str],
    args: list[str],
    timeout_s: float,
) -> dict[str, Any]:
    """Start the server role on its device, the client role against it; return its JSON."""
    agent = list(AGENT)
    pipes: dict[str, Any] = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    (server_role, server_dev), (client_role, client_dev) = server, client
    host = handle.address(server_dev)
    peer = handle.spawn(server_dev, [*agent, server_role, host], **pipes)
    procs = [peer]
    try:
        port = peer.stdout.readline().strip() if peer.stdout else ""
        if not port.isdigit():
            raise RuntimeError(f"probe {server_role} on {server_dev!r} failed: {_stderr(peer)!r}")
        procs.append(handle.spawn(client_dev, [*agent, client_role, host, port, *args], **pipes))
        out, err = procs[1].communicate(timeout=timeout_s)
        if procs[1].returncode != 0:
            raise RuntimeError(f"probe {client_role} on {client_dev!r} failed: {err!r}")
        peer.wait(timeout=timeout_s)
        return dict(json.loads(out))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _stderr(proc: subprocess.Popen[str]) -> str:
    proc.kill()
    return proc.communicate()[1]
