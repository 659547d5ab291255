"""Remove containers and networks labelled ``testbed.run`` (one run's, or every run's); nothing else.

Called by `cleanup.clean`, so ``testbed clean`` covers both backends. Without a
Docker SDK, or with no engine answering, there is nothing of ours to find and
both functions return empty lists quickly. Images are labelled ``testbed.image``,
not ``testbed.run``: they are never removed here.
"""

from __future__ import annotations

import os
from typing import Any

from testbed.emulation.docker.devices import RUN_LABEL

ENGINE_TIMEOUT_S = 10


def _client() -> Any | None:
    """A client for the configured engine, or None when there is none to ask."""
    host = os.environ.get("DOCKER_HOST", "")
    if not host and not os.path.exists("/var/run/docker.sock"):
        return None
    try:
        import docker

        client = docker.from_env(timeout=ENGINE_TIMEOUT_S)
        client.ping()
    except Exception:  # noqa: BLE001 - no SDK or no engine: nothing labelled can exist there
        return None
    return client


def _label_filter(run_id: str | None) -> dict[str, str]:
    return {"label": RUN_LABEL if run_id is None else f"{RUN_LABEL}={run_id}"}


def find(run_id: str | None = None, client: Any | None = None) -> tuple[list[str], list[str]]:
    """Names of labelled containers (running or not) and networks."""
    client = client or _client()
    if client is None:
        return [], []
    filters = _label_filter(run_id)
    containers = [c.name for c in client.containers.list(all=True, filters=filters)]
    networks = [n.name for n in client.networks.list(filters=filters)]
    return sorted(containers), sorted(networks)


def clean(run_id: str | None = None, client: Any | None = None) -> tuple[list[str], list[str]]:
    """Force-remove labelled containers, then labelled networks; returns their names."""
    engine = client or _client()
    if engine is None:
        return [], []
    import docker.errors

    filters = _label_filter(run_id)
    containers = []
    for container in engine.containers.list(all=True, filters=filters):
        try:
            container.remove(force=True, v=True)
            containers.append(container.name)
        except docker.errors.NotFound:
            pass  # removed meanwhile (another cleanup, or auto-remove)
    networks = []
    for network in engine.networks.list(filters=filters):
        try:
            network.remove()
            networks.append(network.name)
        except docker.errors.NotFound:
            pass
    return sorted(containers), sorted(networks)
