"""Flask dashboard over the results directory: runs, live charts, compare, start/stop by token."""

from testbed.dashboard.app import create_app

__all__ = ["create_app"]
