"""A held cluster: one process keeps an emulated cluster up and serves exec, shape, status, down.

`testbed cluster up SPEC` starts `python -m testbed.controller.cluster_hold STATE_DIR` in its own
session. The holder brings the spec's cluster up with its backend (local or docker; everything
labelled with the run id `cluster-<name>`, as runs are), writes STATE_DIR/cluster.json, and
answers one JSON request per connection on a Unix socket (mode 0600, in a private directory):

- exec: the client passes its stdin/stdout/stderr (SCM_RIGHTS) with argv, env and cwd; the
  holder starts the program as the device (`ClusterHandle.spawn`: its namespace and cgroup, or
  its container) on those descriptors, and answers the exit status. A client that goes away
  (Ctrl-C) has its program stopped: SIGTERM, SIGKILL after 5 s.
- shape: change a device's access link or a pair's path (`update_link`: rate, delay, jitter, loss).
- status: devices, addresses, links, fidelity, the programs started and whether they still run.
- down: stop every program, take the cluster down, remove the state; also on SIGTERM/SIGINT/SIGHUP.

Everything the backend made carries the run id, so a holder that was SIGKILLed leaves nothing
that `testbed cluster down NAME` (or `testbed clean cluster-NAME`) cannot remove.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from testbed.emulation.config import LinkSettings

STATE_FILE = "cluster.json"
SPEC_FILE = "spec.json"
LOG_FILE = "holder.log"
MAX_REQUEST = 1 << 20
STOP_GRACE_S = 5.0


def run_id_of(name: str) -> str:
    return f"cluster-{name}"


# -- client side ------------------------------------------------------------------------------

class HolderGone(RuntimeError):
    """No holder answers for this cluster (it was never up, is down, or crashed)."""


def request(state: dict[str, Any], message: dict[str, Any], fds: list[int] | None = None,
            timeout_s: float | None = 30.0) -> dict[str, Any]:
    """Send one request to the cluster's holder and return its answer."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(state["socket"])
    except OSError as err:
        sock.close()
        raise HolderGone(f"cluster {state['name']!r}: its holder does not answer ({err.strerror})") from None
    with sock:
        sock.settimeout(timeout_s)
        data = (json.dumps(message) + "\n").encode()
        if fds:
            socket.send_fds(sock, [data], fds)
        else:
            sock.sendall(data)
        return _read_json(sock)


def _read_json(sock: socket.socket) -> dict[str, Any]:
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = sock.recv(65536)
        if not chunk:
            raise HolderGone("the holder closed the connection without an answer")
        buf += chunk
        if len(buf) > MAX_REQUEST:
            raise ValueError("answer too large")
    answer: dict[str, Any] = json.loads(buf)
    return answer


# -- the holder -------------------------------------------------------------------------------

class Holder:
    """Serves one cluster handle until asked (or signalled) to take it down."""

    def __init__(self, state_dir: Path, handle: Any, name: str) -> None:
        self.state_dir, self.handle, self.name = state_dir, handle, name
        self.sock_dir = Path(tempfile.mkdtemp(prefix="tb-cluster-"))
        self.sock_path = self.sock_dir / "sock"
        self.procs: list[tuple[subprocess.Popen[Any], str, list[str]]] = []
        self.stopping = threading.Event()
        self.lock = threading.Lock()

    def state(self) -> dict[str, Any]:
        h = self.handle
        return {
            "name": self.name, "run_id": h.run_id, "pid": os.getpid(), "socket": str(self.sock_path),
            "backend": h.cluster.backend, "fidelity_level": h.fidelity_level,
            "fidelity_notes": list(h.fidelity.notes), "host_address": h.host_address,
            "devices": {n: {"address": h.address(n), "cpus": d.cpus, "memory_bytes": d.memory_bytes,
                            "arch": d.arch, "gpus": d.gpus} for n, d in h.devices.items()},
            "links": {"-".join(k): s.settings() for k, s in h.links.items()},
        }

    def serve(self) -> None:
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(self.sock_path))
        os.chmod(self.sock_path, 0o600)
        server.listen(16)
        server.settimeout(0.5)
        _write_json(self.state_dir / STATE_FILE, self.state())
        try:
            while not self.stopping.is_set():
                try:
                    conn, _ = server.accept()
                except TimeoutError:
                    continue
                threading.Thread(target=self._serve_one, args=(conn,), daemon=True).start()
        finally:
            server.close()

    def _serve_one(self, conn: socket.socket) -> None:
        with conn:
            try:
                data, fds, _, _ = socket.recv_fds(conn, MAX_REQUEST, 3)
                message = json.loads(data)
                answer = self._answer(message, fds, conn)
            except Exception as err:  # noqa: BLE001 - every failure goes back to the client
                answer = {"error": f"{type(err).__name__}: {err}"}
            try:
                conn.sendall((json.dumps(answer) + "\n").encode())
            except OSError:
                pass  # the client went away

    def _answer(self, message: dict[str, Any], fds: list[int], conn: socket.socket) -> dict[str, Any]:
        op = message.get("op")
        if op == "exec":
            return self._exec(message, fds, conn)
        for fd in fds:
            os.close(fd)
        if op == "status":
            return {**self.state(), "processes": self._processes()}
        if op == "shape":
            settings = LinkSettings.model_validate(message.get("settings") or {})
            target = message["target"]
            new = self.handle.update_link(target if isinstance(target, str) else tuple(target),
                                          **settings.settings())
            _write_json(self.state_dir / STATE_FILE, self.state())
            return {"link": new.settings()}
        if op == "down":
            self.stopping.set()
            return {"ok": True}
        raise ValueError(f"unknown op {op!r}; expected exec, shape, status or down")

    def _exec(self, message: dict[str, Any], fds: list[int], conn: socket.socket) -> dict[str, Any]:
        if len(fds) != 3:
            raise ValueError(f"exec needs the client's stdin, stdout and stderr; got {len(fds)} descriptors")
        argv, device = [str(a) for a in message["argv"]], str(message["device"])
        # the client's folder where the device shares the host's filesystem; a container's own
        # working directory otherwise
        cwd = message.get("cwd") if self.handle.cluster.backend == "local" else None
        try:
            proc = self.handle.spawn(device, argv, dict(message.get("env") or {}), stdin=fds[0],
                                     stdout=fds[1], stderr=fds[2], cwd=cwd)
        finally:
            for fd in fds:
                os.close(fd)
        with self.lock:
            self.procs.append((proc, device, argv))
        threading.Thread(target=_stop_when_client_leaves, args=(conn, proc), daemon=True).start()
        code = proc.wait()
        return {"exit": 128 - code if code < 0 else code}

    def _processes(self) -> list[dict[str, Any]]:
        with self.lock:
            return [{"pid": p.pid, "device": d, "argv": a, "running": p.poll() is None,
                     "exit": p.returncode} for p, d, a in self.procs]


def _stop_when_client_leaves(conn: socket.socket, proc: subprocess.Popen[Any]) -> None:
    """The client holds its end open while the program runs; EOF first means it was stopped."""
    try:
        conn.recv(1)
    except OSError:
        pass
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()


def _write_json(path: Path, obj: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def main(state_dir: str) -> int:
    """Bring the cluster in STATE_DIR/spec.json up, serve it, take it down; 0 when it went down cleanly."""
    from testbed.controller.backends import BACKENDS
    from testbed.emulation.config import ClusterSpec

    folder = Path(state_dir)
    spec = json.loads((folder / SPEC_FILE).read_text())
    cluster = ClusterSpec.model_validate(spec["cluster"])
    holder: Holder | None = None
    main_pid = os.getpid()

    def stop(signum: int, _frame: Any) -> None:
        if os.getpid() != main_pid:  # a child forked meanwhile (pyroute2 does): default action
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        if holder is None:
            raise KeyboardInterrupt  # still coming up: unwind, the backend removes what it made
        holder.stopping.set()

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, stop)
    backend = BACKENDS.get(cluster.backend)(run_id_of(spec["name"]))
    try:
        with backend.up(cluster, host_link=True) as handle:  # down() always runs on the way out
            holder = Holder(folder, handle, spec["name"])
            holder.serve()
    finally:
        if holder is not None:
            holder.sock_path.unlink(missing_ok=True)
            holder.sock_dir.rmdir()
        (folder / STATE_FILE).unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
