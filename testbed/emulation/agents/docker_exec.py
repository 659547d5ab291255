"""Host-side relay for one process in a device container: a real child process the caller owns.

`DockerCluster.spawn` starts this by module name (``python -m testbed.emulation.agents.docker_exec ...``) as
a `subprocess.Popen`, so the controller supervises containers' processes
exactly like local ones: pipes, ``poll``/``wait``/``terminate``/``kill``,
process groups. Usage::

    python -m testbed.emulation.agents.docker_exec --container ID [--user UID:GID] [--workdir DIR]
                             [--env KEY=VALUE ...] -- PROGRAM ARG...

Through the Docker SDK it creates an exec of `docker_shim` + PROGRAM in the
container, copies the exec's stdout/stderr to its own, and exits with the
program's status; a status 128+N (killed by signal N inside the container,
e.g. 137 for the OOM killer) is re-raised as that signal, so Popen reports
``-N`` as for a local process. SIGTERM/SIGINT/SIGHUP half-close the exec's
stdin, which makes the shim stop the program gracefully; if this relay is
SIGKILLed the connection drops and the shim stops the program too. The relay
gets SIGTERM when its parent (the controller) ends, however it ends.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
from typing import Any

from testbed.processes import die_with_parent

SHIM = ["python3", "-m", "testbed.emulation.agents.docker_shim", "--"]  # the image's python
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="docker_exec")
    parser.add_argument("--container", required=True, help="container id or name")
    parser.add_argument("--user", default="", help="UID:GID inside the container")
    parser.add_argument("--workdir", default=None, help="working directory inside the container")
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for the program")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.command[:1] == ["--"]:
        args.command = args.command[1:]
    if not args.command:
        parser.error("expected a command after '--'")
    bad = [e for e in args.env if "=" not in e]
    if bad:
        parser.error(f"--env {bad[0]!r} is not KEY=VALUE")
    return args


def _raw(sock: Any) -> socket.socket:
    """The socket under the SDK's SocketIO wrapper (for shutdown)."""
    return getattr(sock, "_sock", sock)


def _write(fd: int, data: bytes, closed: set[int]) -> None:
    """Copy to our stdout/stderr; a reader that went away is not the program's failure."""
    if fd in closed:
        return
    try:
        while data:
            data = data[os.write(fd, data) :]
    except BrokenPipeError:
        closed.add(fd)


def relay(args: argparse.Namespace) -> int:
    """Run the exec, copy its output, return its exit code."""
    from docker.utils.socket import STDERR, frames_iter

    import docker

    api = docker.from_env().api
    exec_id = api.exec_create(
        args.container,
        [*SHIM, *args.command],
        stdin=True,
        stdout=True,
        stderr=True,
        tty=False,
        environment=list(args.env),
        workdir=args.workdir,
        user=args.user,
    )["Id"]
    sock = api.exec_start(exec_id, tty=False, socket=True)
    raw = _raw(sock)

    def half_close(signum: int, frame: object) -> None:
        try:
            raw.shutdown(socket.SHUT_WR)  # the shim sees EOF on stdin and stops the program
        except OSError:
            pass

    for sig in STOP_SIGNALS:
        signal.signal(sig, half_close)
    closed: set[int] = set()
    for stream, data in frames_iter(sock, tty=False):
        _write(2 if stream == STDERR else 1, data, closed)
    code = api.exec_inspect(exec_id)["ExitCode"]
    return int(code) if code is not None else 1


def reraise(code: int) -> int:
    """Die of signal N for a status 128+N, so our parent sees what happened in the container."""
    if 128 < code < 128 + signal.NSIG:
        sig = code - 128
        sys.stdout.flush()
        sys.stderr.flush()
        if sig not in (signal.SIGKILL, signal.SIGSTOP):  # those cannot be caught anyway
            signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
    return code


def main(argv: list[str]) -> int:
    die_with_parent(signal.SIGTERM)  # a killed controller stops the program in the container too
    args = _parse(argv)
    try:
        code = relay(args)
    except Exception as error:  # noqa: BLE001 - any SDK/engine failure ends this relay clearly
        print(
            f"docker_exec: cannot run {args.command!r} in {args.container}: {error}",
            file=sys.stderr,
        )
        return 125
    return reraise(code)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
