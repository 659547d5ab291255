"""The objects one dashboard app holds (run store, job manager) and how views reach them."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from testbed.dashboard.jobs import JobManager
from testbed.dashboard.store import RunStore

EXTENSION = "testbed_dashboard"


@dataclass(frozen=True)
class DashboardState:
    """What the views of one app share."""

    store: RunStore
    jobs: JobManager


def state() -> DashboardState:
    return current_app.extensions[EXTENSION]  # type: ignore[no-any-return]
