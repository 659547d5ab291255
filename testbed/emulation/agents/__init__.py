"""Small stdlib-only programs run inside devices by module name (launcher, probe, exec relay, tc).

Every agent runs as `python -m testbed.emulation.agents.<name>`; `agent_argv` spells that for
the interpreter running the caller. This package and its parents import nothing, so an agent
starts in a few milliseconds.
"""

from __future__ import annotations

import sys

PACKAGE = __name__


def agent_argv(name: str, python: str | None = None) -> list[str]:
    """The command line that runs agent `name` (e.g. 'nsexec') with `python` (default: ours)."""
    return [python or sys.executable, "-m", f"{PACKAGE}.{name}"]
