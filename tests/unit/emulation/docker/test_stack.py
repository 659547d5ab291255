"""Fast tier for adopting a standing stack's containers (`docker_stack`); the real run is in
tests/test_docker_experiment.py."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from testbed.emulation.config import ClusterSpec
from testbed.emulation.docker.stack import (
    StackMismatch,
    check_caps,
    container_caps,
    container_mounts,
    find_containers,
    shared_network,
)
from testbed.emulation.profiles import ResolvedDevice

GIB = 1024**3


class FakeContainer:
    def __init__(self, labels: dict[str, str], networks: list[str]) -> None:
        self.labels = labels
        self.attrs = {"NetworkSettings": {"Networks": {n: {} for n in networks}}}


class FakeContainers:
    """containers.list(filters={"label": [...], "status": "running"}) over running containers."""

    def __init__(self, running: list[FakeContainer]) -> None:
        self.running = running

    def list(self, filters: dict[str, Any]) -> list[FakeContainer]:
        assert filters["status"] == "running"
        wanted = dict(label.split("=", 1) for label in filters["label"])
        return [c for c in self.running if wanted.items() <= c.labels.items()]


class FakeClient:
    def __init__(self, running: list[FakeContainer]) -> None:
        self.containers = FakeContainers(running)


def _device(name: str, labels_stack: str = "tb") -> FakeContainer:
    return FakeContainer({"testbed.stack": labels_stack, "testbed.device": name}, ["tb_testbed"])


def test_finds_one_container_per_device_of_the_named_stack() -> None:
    client = FakeClient([_device("edge1"), _device("edge2"), _device("edge1", "other")])
    found = find_containers(client, "tb", ["edge1", "edge2"])
    assert [c.labels["testbed.device"] for c in found.values()] == ["edge1", "edge2"]
    assert all(c.labels["testbed.stack"] == "tb" for c in found.values())
    with pytest.raises(StackMismatch, match=r"device 'edge3': expected 1 running .*found 0"):
        find_containers(client, "tb", ["edge3"])
    twice = FakeClient([_device("edge1"), _device("edge1")])
    with pytest.raises(StackMismatch, match="found 2"):
        find_containers(twice, "tb", ["edge1"])


def test_caps_read_from_nano_cpus_or_quota_and_checked_against_the_spec() -> None:
    assert container_caps({"NanoCpus": 10**9, "Memory": GIB}) == (1.0, GIB)
    assert container_caps({"CpuQuota": 50000, "CpuPeriod": 100000, "Memory": 0}) == (0.5, None)
    assert container_caps({}) == (None, None)
    edge = ResolvedDevice("edge1", "edge", 1.0, GIB, "amd64", 0)
    check_caps(edge, {"NanoCpus": 10**9, "Memory": GIB})
    with pytest.raises(StackMismatch, match=r"cpus=0.4, memory=1073741824 bytes; the spec asks"):
        check_caps(edge, {"NanoCpus": 4 * 10**8, "Memory": GIB})
    with pytest.raises(StackMismatch, match="cpus=None"):
        check_caps(edge, {"Memory": GIB})
    check_caps(ResolvedDevice("ps", "cloud", None, None, "amd64", 0), {})


def test_the_devices_must_share_exactly_one_network() -> None:
    a, b = _device("a"), _device("b")
    assert shared_network({"a": a, "b": b}) == "tb_testbed"
    b.attrs["NetworkSettings"]["Networks"] = {"elsewhere": {}}
    with pytest.raises(StackMismatch, match=r"share networks \[\]"):
        shared_network({"a": a, "b": b})


def test_mounts_are_seen_at_their_destination() -> None:
    attrs = {"Mounts": [{"Destination": "/results", "RW": True}, {"Destination": "/data"}]}
    assert container_mounts(attrs) == {
        "/results": {"bind": "/results", "mode": "rw"},
        "/data": {"bind": "/data", "mode": "ro"},
    }


def test_stack_needs_the_docker_backend_and_a_plain_name() -> None:
    devices = [{"name": "edge1"}]
    assert ClusterSpec(backend="docker", stack="testbed", devices=devices).stack == "testbed"
    with pytest.raises(ValidationError, match="needs backend 'docker'"):
        ClusterSpec(stack="testbed", devices=devices)
    with pytest.raises(ValidationError, match="stack"):
        ClusterSpec(backend="docker", stack="a b", devices=devices)
