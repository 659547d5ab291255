"""`python -m testbed.dashboard [--host H] [--port P] [--results DIR]`: serve the dashboard."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from testbed.dashboard.app import allowed_hosts, create_app, shutdown
from testbed.dashboard.auth import TOKEN_ENV
from testbed.dashboard.server import bind
from testbed.metrics.run_dir import default_results_root

WARM_RUNS = 8  # newest runs parsed at start, so their pages open warm


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m testbed.dashboard", description=__doc__)
    p.add_argument(
        "--host",
        default=os.environ.get("TESTBED_DASHBOARD_HOST", "127.0.0.1"),
        help="address to bind (default 127.0.0.1; set 0.0.0.0 only behind a trusted network)",
    )
    p.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("TESTBED_DASHBOARD_PORT", "8050")),
        help="port (default 8050; 0 picks a free one)",
    )
    p.add_argument(
        "--results",
        type=Path,
        default=None,
        help="results root (default: results/ or $TESTBED_RESULTS)",
    )
    p.add_argument(
        "--experiments", type=Path, default=None, help="experiments directory for start requests"
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results = args.results or default_results_root()
    results.mkdir(parents=True, exist_ok=True)
    app = create_app(
        results,
        experiments_dir=args.experiments,
        trusted_hosts=allowed_hosts(args.host),
        warm_runs=WARM_RUNS,
    )
    server = bind(app, args.host, args.port)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # so the finally below reaps started runs
    mutations = "enabled" if app.config["DASHBOARD_TOKEN"] else f"disabled (set {TOKEN_ENV})"
    print(
        f"testbed dashboard on http://{args.host}:{server.server_port}/  "
        f"results: {results.resolve()}  "
        f"start/stop: {mutations}",
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        shutdown(app)
    return 0


if __name__ == "__main__":
    sys.exit(main())
