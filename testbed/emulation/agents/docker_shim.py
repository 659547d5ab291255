"""In-container process shim (stdlib only): run argv, stop it when the host relay goes away.

`docker exec` does not forward signals, and a killed exec client leaves its
process running. The docker backend therefore runs every spawned command as::

    python3 -m testbed.emulation.agents.docker_shim -- PROGRAM ARG...

with the exec's stdin attached to the host relay (`docker_exec`). The shim
starts the program in its own session (stdin /dev/null, stdout/stderr
inherited), forwards SIGTERM/SIGINT/SIGHUP to its process group, and treats
end-of-file on stdin as "the relay stopped or died": it then sends SIGTERM,
and SIGKILL after a grace period. Its exit status is the program's, or
128 + N when the program was killed by signal N (as a shell reports it).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

GRACE_S = float(os.environ.get("TESTBED_SHIM_GRACE_S", "5"))
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def _signal_group(child: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(child.pid, sig)
    except ProcessLookupError:
        pass


def _stop(child: subprocess.Popen[bytes]) -> None:
    """SIGTERM the program's group, SIGKILL it after the grace period."""
    _signal_group(child, signal.SIGTERM)
    try:
        child.wait(timeout=GRACE_S)
    except subprocess.TimeoutExpired:
        _signal_group(child, signal.SIGKILL)


def _watch_stdin(child: subprocess.Popen[bytes]) -> None:
    """Block until the relay's side of stdin closes, then stop the program."""
    try:
        while os.read(0, 65536):  # the raw fd: a buffered reader's lock would block shutdown
            pass
    except OSError:
        pass
    if child.poll() is None:
        _stop(child)


def exit_status(returncode: int) -> int:
    """A Popen return code as a shell exit status (negative = killed by that signal)."""
    return 128 - returncode if returncode < 0 else returncode


def main(argv: list[str]) -> int:
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        print("docker_shim: expected a command after '--'", file=sys.stderr)
        return 2
    try:
        child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True)
    except OSError as error:
        print(f"docker_shim: cannot start {argv!r}: {error}", file=sys.stderr)
        return 127
    for sig in FORWARDED:
        signal.signal(sig, lambda s, _f: _signal_group(child, s))
    threading.Thread(target=_watch_stdin, args=(child,), daemon=True).start()
    return exit_status(child.wait())


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
