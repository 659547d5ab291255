"""Serving the dashboard: a threaded WSGI server on a host and port (port 0 picks a free one)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from flask import Flask
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from testbed.dashboard.app import shutdown


class QuietHandler(WSGIRequestHandler):
    """A request handler that does not log every request (for tests and benchmarks)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


def bind(
    app: Flask, host: str = "127.0.0.1", port: int = 8050, quiet: bool = False
) -> BaseWSGIServer:
    """A threaded server already bound and listening (so a port-0 server knows its port)."""
    return make_server(
        host, port, app, threaded=True, request_handler=QuietHandler if quiet else None
    )


@contextmanager
def serving(app: Flask, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve in a background thread, yielding the base URL; then stop the server and the runs."""
    server = bind(app, host, port, quiet=True)
    thread = threading.Thread(target=server.serve_forever, name="dashboard-server", daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=5)
        server.server_close()
        shutdown(app)
