"""Bulk-TCP probe ends, run by module name inside device namespaces (stdlib only).

``sink HOST`` listens on an ephemeral port, prints it (the readiness signal),
receives until EOF and answers with the bytes that arrived after the first
read and the time from the first to the last read. ``send HOST PORT NBYTES`` sends NBYTES, reads that answer and
prints one JSON line: bytes, seconds, MSS and MTU of the connection.
``echo HOST`` prints its port and echoes bytes until EOF; ``ping HOST PORT N``
times N one-byte round trips and prints them as JSON (seconds).
"""

from __future__ import annotations

import json
import socket
import sys
import time

CHUNK = 1 << 20
IP_MTU = 14  # linux/in.h; socket.IP_MTU is missing on some builds


def sink(host: str) -> None:
    with socket.socket() as server:
        server.bind((host, 0))
        server.listen(1)
        print(server.getsockname()[1], flush=True)
        conn, _ = server.accept()
        with conn:
            counted, seconds = _drain(conn)
            conn.sendall(f"{counted} {seconds:.9f}\n".encode())


def _drain(conn: socket.socket) -> tuple[int, float]:
    """Bytes that arrived after the first read, and the time from first to last read."""
    buf = bytearray(CHUNK)
    received, first_count, first, last = 0, 0, 0.0, 0.0
    while count := conn.recv_into(buf):
        last = time.perf_counter()
        if not received:
            first, first_count = last, count
        received += count
    return received - first_count, last - first


def send(host: str, port: int, nbytes: int) -> None:
    with socket.create_connection((host, port), timeout=120) as conn:
        payload = memoryview(bytes(CHUNK))
        left = nbytes
        while left > 0:
            left -= conn.send(payload[: min(left, CHUNK)])
        mss = conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG)
        mtu = conn.getsockopt(socket.IPPROTO_IP, IP_MTU)
        conn.shutdown(socket.SHUT_WR)
        received, seconds = conn.makefile().readline().split()
    print(json.dumps({"bytes": int(received), "seconds": float(seconds), "mss": mss, "mtu": mtu}))


def echo(host: str) -> None:
    with socket.socket() as server:
        server.bind((host, 0))
        server.listen(1)
        print(server.getsockname()[1], flush=True)
        conn, _ = server.accept()
        with conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            while data := conn.recv(64):
                conn.sendall(data)


def ping(host: str, port: int, count: int) -> None:
    rtts = []
    with socket.create_connection((host, port), timeout=30) as conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(count):
            start = time.perf_counter()
            conn.sendall(b"x")
            if not conn.recv(1):
                raise ConnectionError("echo peer closed the connection")
            rtts.append(time.perf_counter() - start)
    print(json.dumps({"rtts": rtts}))


ROLES = {
    "sink": lambda a: sink(a[0]),
    "send": lambda a: send(a[0], int(a[1]), int(a[2])),
    "echo": lambda a: echo(a[0]),
    "ping": lambda a: ping(a[0], int(a[1]), int(a[2])),
}

if __name__ == "__main__":
    role, *args = sys.argv[1:]
    if role not in ROLES:
        sys.exit(f"probe_agent: unknown role {role!r}; expected one of {sorted(ROLES)}")
    ROLES[role](args)
