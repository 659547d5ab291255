"""Restricted unpickling of trusted local numpy pickles (no arbitrary globals)."""

from __future__ import annotations

import io
import pickle
from typing import Any

import numpy as np
from numpy._core import multiarray as _multiarray

# (module, name) -> object; the only globals a numpy-array pickle needs.
_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _multiarray._reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle referenced a global outside the numpy allow-list."""


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the numpy globals in ``_ALLOWED``."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            allowed = ", ".join(f"{m}.{n}" for m, n in sorted(_ALLOWED))
            raise UnsafePickleError(
                f"refusing global {module}.{name!s} in pickle; allowed: {allowed}"
            ) from None


def safe_loads(data: bytes, *, encoding: str = "ASCII") -> Any:
    """Unpickle ``data`` allowing only plain containers and numpy arrays."""
    return NumpyOnlyUnpickler(io.BytesIO(data), encoding=encoding).load()
