"""Shared test setup: quiet TensorFlow, a tmp results root for runs started by tests, and a real
VictoriaMetrics server fixture (skipped where the binary is not installed)."""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TESTBED_OFFLINE", "1")

from testbed.testing.victoria import Victoria, binary, free_port  # noqa: E402


@pytest.fixture
def victoria(tmp_path: Path) -> Iterator[Victoria]:
    if binary() is None:
        pytest.skip("victoria-metrics not installed (Debian: apt-get install victoria-metrics)")
    server = Victoria(tmp_path / "vm-data", free_port(), tmp_path / "vm.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()
