"""The on-disk dataset cache: one uint8 npz per dataset in the data directory."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import platformdirs

from testbed.data.dataset import RawSplits

DATA_ENV = "TESTBED_DATA"
_ARRAYS = ("x_train", "y_train", "x_test", "y_test")


def data_dir() -> Path:
    """``$TESTBED_DATA`` if set, else the per-user cache dir ``.../testbed/data``."""
    env = os.environ.get(DATA_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_cache_dir("testbed")) / "data"


def cache_path(root: Path, name: str) -> Path:
    """Where dataset ``name`` is cached under ``root``."""
    return root / f"{name}.npz"


def read_cache(path: Path) -> tuple[RawSplits, str]:
    """Load cached splits and the recorded origin; arrays only, never pickled objects."""
    with np.load(path, allow_pickle=False) as npz:
        missing = [key for key in (*_ARRAYS, "source") if key not in npz.files]
        if missing:
            raise ValueError(f"cache {path} lacks {missing}; expected keys {[*_ARRAYS, 'source']}")
        raw = RawSplits(*(np.asarray(npz[key]) for key in _ARRAYS))
        origin = str(npz["source"][()])
    return raw, origin


def write_cache(path: Path, raw: RawSplits, origin: str) -> None:
    """Write splits and their origin atomically (temp file in the same dir, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".npz.tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            arrays = {key: getattr(raw, key) for key in _ARRAYS}
            np.savez(handle, source=np.str_(origin), **arrays)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; containers of other users read the cache
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
