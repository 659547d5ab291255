"""Emulation backends by name (`cluster.backend`), imported only when a run asks for one."""

from __future__ import annotations

import importlib
from typing import Any

_BACKENDS: dict[str, tuple[str, str]] = {
    "local": ("testbed.emulation.local.backend", "LocalBackend"),
    "docker": ("testbed.emulation.docker.backend", "DockerBackend"),
}


class BackendError(RuntimeError):
    """A backend that is unknown or cannot be imported; the message lists the known keys."""


class BackendRegistry:
    """Maps a backend key to its class, importing the module on `get` (docker needs its SDK)."""

    def __init__(self, entries: dict[str, tuple[str, str]]) -> None:
        self._entries = dict(entries)

    def register(self, key: str, module: str, attr: str) -> None:
        if key in self._entries:
            raise ValueError(f"backend {key!r} is registered twice")
        self._entries[key] = (module, attr)

    def keys(self) -> list[str]:
        return sorted(self._entries)

    def get(self, key: str) -> Any:
        """The backend class: construct it with the run id, then `.up(cluster, host_link=True)`."""
        known = ", ".join(self.keys())
        if key not in self._entries:
            raise BackendError(f"unknown backend {key!r}; known backends: {known}")
        module, attr = self._entries[key]
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as err:
            raise BackendError(
                f"backend {key!r} cannot be imported ({type(err).__name__}: {err}); "
                f"known backends: {known}"
            ) from err


BACKENDS = BackendRegistry(_BACKENDS)
