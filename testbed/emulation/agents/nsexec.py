"""Launcher run by module name (stdlib only): join cgroups, enter a netns, pin CPUs, then exec argv.

Used instead of ``preexec_fn`` so spawning stays safe from a threaded parent
(gRPC, metrics): the set-up happens in a fresh interpreter, never between
fork and exec of the caller. Usage::

    python -m testbed.emulation.agents.nsexec [--netns /run/netns/NAME] [--cgroup PROCS_FILE ...]
                        [--cpus 0,1] -- PROGRAM ARG...
"""

from __future__ import annotations

import argparse
import ctypes
import os
import sys

CLONE_NEWNET = 0x40000000


def _setns(path: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({path}) failed: {os.strerror(err)}")
    finally:
        os.close(fd)


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="nsexec")
    parser.add_argument("--netns", help="path of a network namespace file to enter")
    parser.add_argument("--cgroup", action="append", default=[], help="cgroup.procs to join")
    parser.add_argument("--cpus", help="comma-separated CPU numbers to pin to")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.command[:1] == ["--"]:
        args.command = args.command[1:]
    if not args.command:
        parser.error("expected a command after '--'")
    return args


def main(argv: list[str]) -> int:
    args = _parse(argv)
    try:
        for procs in args.cgroup:
            with open(procs, "w") as f:
                f.write(str(os.getpid()))
        if args.netns:
            _setns(args.netns)
        if args.cpus:
            os.sched_setaffinity(0, {int(c) for c in args.cpus.split(",")})
        os.execvp(args.command[0], args.command)
    except OSError as error:
        print(f"nsexec: cannot start {args.command!r}: {error}", file=sys.stderr)
        return 127
    return 0  # not reached: execvp replaced this process


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
