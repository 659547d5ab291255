"""The dataset registry and ``load_dataset``: cache first, then each source in order."""

from __future__ import annotations

import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

from testbed.data import cache
from testbed.data.cifar import CIFAR10_SPEC, CIFAR100_SPEC
from testbed.data.dataset import (
    Dataset,
    DatasetUnavailableError,
    RawSplits,
    UnknownDatasetError,
    check_raw,
    to_dataset,
)
from testbed.data.mnist import SPEC as MNIST_SPEC
from testbed.data.spec import DatasetSpec, SourceError
from testbed.data.synthetic import SPEC as CIFAR10_SYNTHETIC_SPEC

DATASETS: Mapping[str, DatasetSpec] = MappingProxyType(
    {spec.name: spec for spec in (MNIST_SPEC, CIFAR10_SPEC, CIFAR100_SPEC, CIFAR10_SYNTHETIC_SPEC)}
)


def get_spec(name: str) -> DatasetSpec:
    """The registered spec for ``name``; the error lists the known keys."""
    try:
        return DATASETS[name]
    except KeyError:
        known = ", ".join(sorted(DATASETS))
        raise UnknownDatasetError(f"unknown dataset {name!r}; known: {known}") from None


def load_dataset(name: str, data_dir: str | Path | None = None) -> Dataset:
    """Load ``name`` from the cache in ``data_dir`` (default ``cache.data_dir()``) or a source."""
    spec = get_spec(name)
    if spec.synthetic:  # generated in a moment: never cached
        raw, origin = spec.sources[0].fetch(Path("."))
        return _finish(spec, raw, origin)
    root = Path(data_dir) if data_dir is not None else cache.data_dir()
    path = cache.cache_path(root, name)
    failures: list[str] = []
    if path.is_file():
        try:
            raw, origin = cache.read_cache(path)
            return _finish(spec, raw, f"cache:{path} (from {origin})")
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            failures.append(f"cache {path}: {exc}")
    for source in spec.sources:
        try:
            raw, origin = source.fetch(root)
        except (SourceError, OSError) as exc:
            failures.append(f"{source.label}: {exc}")
            continue
        check_raw(name, raw, spec.input_shape, spec.num_classes)
        return _finish(spec, raw, f"{origin}; {_store(path, raw, origin)}")
    details = "\n".join(f"  - {line}" for line in failures or ["no sources registered"])
    raise DatasetUnavailableError(
        f"no source could provide dataset {name!r} (data dir {root}):\n{details}"
    )


def _finish(spec: DatasetSpec, raw: RawSplits, source: str) -> Dataset:
    """Scale validated splits into the public ``Dataset``."""
    return to_dataset(spec.name, raw, spec.num_classes, spec.input_shape, source, spec.synthetic)


def _store(path: Path, raw: RawSplits, origin: str) -> str:
    """Cache the splits; a failed write warns instead of losing the freshly fetched data."""
    try:
        cache.write_cache(path, raw, origin)
    except OSError as exc:
        warnings.warn(f"could not cache dataset at {path}: {exc}", RuntimeWarning, stacklevel=3)
        return f"not cached ({exc})"
    return f"cached at {path}"
