"""Adopting a standing stack's device containers (docker-compose or Swarm) instead of creating them.

`cluster: {backend: docker, stack: NAME}` runs an experiment on the containers that a
`docker-compose.yml` like the project's already started: one running container per spec
device, labelled ``testbed.stack=NAME`` and ``testbed.device=<device>``. The stack owns their
caps, image and mounts, so the run checks that the caps match the spec (it never changes
them), uses the network the devices share, shapes links inside the containers as for its own
containers, and at the end removes only its shaping and its processes: the containers keep
running for the next experiment.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from testbed.emulation.profiles import ResolvedDevice

STACK_LABEL, DEVICE_LABEL = "testbed.stack", "testbed.device"


class StackMismatch(RuntimeError):
    """The standing containers do not realise the spec's devices."""


@dataclass(frozen=True)
class Adopted:
    """The stack's containers by device, the network they share, and their mount points."""

    containers: dict[str, Any]
    network: str
    mounts: dict[str, dict[str, str]]


def adopt(client: Any, stack: str, devices: Mapping[str, ResolvedDevice]) -> Adopted:
    """The stack's running container per device, each checked against the spec's caps."""
    found = find_containers(client, stack, list(devices))
    for name, container in found.items():
        check_caps(devices[name], container.attrs["HostConfig"])
    return Adopted(found, shared_network(found), container_mounts(next(iter(found.values())).attrs))


def find_containers(client: Any, stack: str, devices: list[str]) -> dict[str, Any]:
    """The one running container per device of the stack, by labels."""
    found: dict[str, Any] = {}
    for name in devices:
        labels = [f"{STACK_LABEL}={stack}", f"{DEVICE_LABEL}={name}"]
        running = client.containers.list(filters={"label": labels, "status": "running"})
        if len(running) != 1:
            raise StackMismatch(
                f"device {name!r}: expected 1 running container labelled {', '.join(labels)}, "
                f"found {len(running)}; start the stack (docker-compose up -d) or drop "
                "cluster.stack to let the run create its own containers"
            )
        found[name] = running[0]
    return found


def container_caps(host_config: Mapping[str, Any]) -> tuple[float | None, int | None]:
    """(cpus, memory bytes) a container is limited to; None where it is not."""
    nano = host_config.get("NanoCpus") or 0
    quota, period = host_config.get("CpuQuota") or 0, host_config.get("CpuPeriod") or 0
    cpus = nano / 1e9 if nano else (quota / period if quota > 0 and period else None)
    memory = host_config.get("Memory") or None
    return cpus, memory


def check_caps(device: ResolvedDevice, host_config: Mapping[str, Any]) -> None:
    """Refuse a container whose caps differ from what the spec asks for the device."""
    cpus, memory = container_caps(host_config)
    want_cpus, want_memory = device.cpus, device.memory_bytes
    cpus_ok = (cpus is None) == (want_cpus is None) and (
        cpus is None or want_cpus is None or abs(cpus - want_cpus) < 1e-3
    )
    if not cpus_ok or memory != want_memory:
        raise StackMismatch(
            f"device {device.name!r}: the stack's container is capped at cpus={cpus}, "
            f"memory={memory} bytes; the spec asks cpus={want_cpus}, memory={want_memory} "
            "bytes (None = uncapped). Change the spec's device or the stack's limits"
        )


def shared_network(containers: Mapping[str, Any]) -> str:
    """The one network every adopted container is attached to."""
    names = [set(c.attrs["NetworkSettings"]["Networks"]) for c in containers.values()]
    common = sorted(set.intersection(*names)) if names else []
    if len(common) != 1:
        raise StackMismatch(
            f"the stack's device containers share networks {common}; expected exactly one "
            "(the stack's own network)"
        )
    return common[0]


def container_mounts(attrs: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """The container's mount points, in `docker_devices.volumes` form (for `hidden_paths`)."""
    return {
        m["Destination"]: {"bind": m["Destination"], "mode": "rw" if m.get("RW") else "ro"}
        for m in attrs.get("Mounts", [])
    }
