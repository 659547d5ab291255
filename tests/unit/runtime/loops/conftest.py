"""Shared by the loop tests: a fake parameter server (real gRPC on port 0) recording pushes."""

from collections.abc import Iterator

import pytest

from testbed.testing.fake_peers import FakeParameterServer


@pytest.fixture
def ps() -> Iterator[FakeParameterServer]:
    server = FakeParameterServer()
    yield server
    server.close()
