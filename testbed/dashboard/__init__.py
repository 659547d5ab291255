"""Flask dashboard over the results directory: runs, live charts, compare, start/stop by token.

`create_app` imports Flask on first use, so the run-reading modules (`store`, `runs`) serve the
CLI (`testbed runs`) without it.
"""

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from testbed.dashboard.app import create_app

        return create_app
    raise AttributeError(f"module 'testbed.dashboard' has no attribute {name!r}")
