"""The Flask app factory: JSON API, pages, static charts; mutations need the configured token."""

from __future__ import annotations

import atexit
import os
import weakref
from pathlib import Path
from typing import Any

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from testbed.dashboard import api, pages
from testbed.dashboard.auth import TOKEN_ENV
from testbed.dashboard.jobs import JobManager, JobRefused
from testbed.dashboard.paths import BadName
from testbed.dashboard.state import EXTENSION, DashboardState
from testbed.dashboard.store import RunNotFound, RunStore
from testbed.paths import experiments_dir


def default_experiments_dir() -> Path:
    """$TESTBED_EXPERIMENTS, else the project's experiments/."""
    return experiments_dir()


def _error(status: int, message: str) -> Any:
    if request.path.startswith("/api/"):
        return api.error_json(status, message)
    return (
        f"<!doctype html><title>{status}</title><h1>{status}</h1><p>{_escape(message)}</p>",
        status,
    )


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _register_errors(app: Flask) -> None:
    app.register_error_handler(BadName, lambda e: _error(400, str(e)))
    app.register_error_handler(RunNotFound, lambda e: _error(404, str(e)))
    app.register_error_handler(JobRefused, lambda e: _error(e.status, str(e)))
    app.register_error_handler(
        HTTPException, lambda e: _error(e.code or 500, e.description or e.name)
    )


LOOPBACK_HOSTS = ["127.0.0.1", "localhost"]  # IPv6 names cannot be listed (werkzeug 3.1)
HOSTS_ENV = "TESTBED_DASHBOARD_ALLOWED_HOSTS"
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _secure_headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def allowed_hosts(bind_host: str = "127.0.0.1") -> list[str] | None:
    """Host headers to accept: $TESTBED_DASHBOARD_ALLOWED_HOSTS (comma-separated, '*' for any),
    else the loopback names when bound to loopback (so DNS rebinding cannot read the API),
    else any (None)."""
    env = os.environ.get(HOSTS_ENV, "").strip()
    if env:
        return None if env == "*" else [h.strip() for h in env.split(",") if h.strip()]
    return LOOPBACK_HOSTS if bind_host in LOOPBACK_HOSTS else None


def create_app(
    results_root: Path | str,
    token: str | None = None,
    experiments_dir: Path | str | None = None,
    max_running: int = 2,
    stale_after_s: float = 900.0,
    trusted_hosts: list[str] | None = LOOPBACK_HOSTS,
    warm_runs: int = 0,
) -> Flask:
    """A dashboard over `results_root`.

    Mutations need `token` (default: $TESTBED_DASHBOARD_TOKEN) and are refused when neither is set.
    Experiments start from `experiments_dir` (default: $TESTBED_EXPERIMENTS or the repository's
    experiments/). Requests whose Host header is not in `trusted_hosts` (None: any) get 400.
    `warm_runs` > 0 parses that many of the newest runs' metrics in the background at start.
    `shutdown(app)` (also run at interpreter exit) stops and reaps the runs it started.
    """
    root = Path(results_root)
    if not root.is_dir():
        raise FileNotFoundError(
            f"results directory {root} does not exist; create it or pass --results DIR"
        )
    app = Flask(__name__)
    app.config["DASHBOARD_TOKEN"] = (
        token if token is not None else os.environ.get(TOKEN_ENV) or None
    )
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.config["TRUSTED_HOSTS"] = trusted_hosts  # other Host headers get 400
    app.after_request(_secure_headers)
    app.url_map.merge_slashes = False  # '//etc/passwd' is a 404, not a redirect to a cleaned path
    jobs = JobManager(root, Path(experiments_dir or default_experiments_dir()), max_running)
    store = RunStore(root, tracker=jobs.tracker, stale_after_s=stale_after_s)
    app.extensions[EXTENSION] = DashboardState(store, jobs)
    app.register_blueprint(api.bp)
    app.register_blueprint(pages.bp)
    _register_errors(app)
    _shutdown_at_exit(jobs)
    if warm_runs > 0:
        store.warm(warm_runs)
    return app


def _shutdown_at_exit(jobs: JobManager) -> None:
    ref = weakref.ref(jobs)

    def _stop() -> None:
        manager = ref()
        if manager is not None:
            manager.shutdown()

    atexit.register(_stop)


def shutdown(app: Flask) -> None:
    """Stop and reap every run this app started."""
    app.extensions[EXTENSION].jobs.shutdown()
