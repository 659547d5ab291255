"""Device profiles (edge, cloud, gpu, jetson) and their resolution against a device spec."""

from __future__ import annotations

import glob
import math
import platform
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from testbed.emulation.units import parse_memory
from testbed.registry import Registry

if TYPE_CHECKING:
    from testbed.emulation.config import DeviceSpec


class ResourceUnavailable(RuntimeError):
    """A device asks for something (a GPU) the backend cannot give it."""


@dataclass(frozen=True)
class Profile:
    """Defaults for a kind of device; None means uncapped."""

    cpus: float | None = None
    memory: str | None = None
    arch: str = "amd64"
    gpus: int = 0
    description: str = ""


@dataclass(frozen=True)
class ResolvedDevice:
    """A device's effective resources: profile defaults overridden by the spec."""

    name: str
    profile: str
    cpus: float | None
    memory_bytes: int | None
    arch: str
    gpus: int
    notes: tuple[str, ...] = field(default=())

    @property
    def threads(self) -> int | None:
        """Thread count to give numeric libraries: the CPU cap rounded up, at least 1."""
        return None if self.cpus is None else max(1, math.ceil(self.cpus))


PROFILES: Registry[Profile] = Registry("device profile")
PROFILES.register("edge")(Profile(cpus=1.0, memory="1g", description="1 CPU, 1 GiB"))
PROFILES.register("cloud")(Profile(description="uncapped CPU and memory"))
PROFILES.register("gpu")(Profile(gpus=1, description="uncapped, one GPU"))
PROFILES.register("jetson")(
    Profile(cpus=4.0, memory="4g", arch="arm64", description="4 CPUs, 4 GiB, arm64")
)

ARCH_ALIASES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def get_profile(key: str) -> Profile:
    """The profile registered under `key`; the error lists the known keys."""
    return PROFILES.get(key)


def register_profile(key: str, profile: Profile) -> Profile:
    return PROFILES.register(key)(profile)


def normalize_arch(arch: str) -> str:
    try:
        return ARCH_ALIASES[arch.lower()]
    except KeyError:
        raise ValueError(
            f"arch {arch!r} is not supported; expected one of {sorted(set(ARCH_ALIASES))}"
        ) from None


def host_arch() -> str:
    return ARCH_ALIASES.get(platform.machine().lower(), platform.machine().lower())


def resolve(spec: DeviceSpec, gpus_available: int | None = None) -> ResolvedDevice:
    """Profile defaults overridden by the spec's own fields; GPUs checked when counted."""
    profile = get_profile(spec.profile)
    memory = spec.memory if spec.memory is not None else profile.memory
    device = ResolvedDevice(
        name=spec.name,
        profile=spec.profile,
        cpus=spec.cpus if spec.cpus is not None else profile.cpus,
        memory_bytes=parse_memory(memory) if memory is not None else None,
        arch=normalize_arch(spec.arch or profile.arch),
        gpus=spec.gpus if spec.gpus is not None else profile.gpus,
    )
    if gpus_available is None or device.gpus <= gpus_available:
        return device
    return _missing_gpu(device, gpus_available, spec.on_missing_gpu)


def _missing_gpu(device: ResolvedDevice, available: int, policy: str) -> ResolvedDevice:
    wanted = f"device {device.name!r} asks for {device.gpus} GPU(s) but {available} are available"
    if policy == "refuse":
        raise ResourceUnavailable(
            f"{wanted}; set on_missing_gpu: fallback on the device to run it on the CPU instead"
        )
    note = f"{wanted}; running with {available} (on_missing_gpu: fallback)"
    return replace(device, gpus=available, notes=device.notes + (note,))


def gpu_count() -> int:
    """NVIDIA GPUs visible on this host (device nodes /dev/nvidiaN)."""
    return len(glob.glob("/dev/nvidia[0-9]*"))


def resolve_devices(specs: list[DeviceSpec], gpus_available: int) -> dict[str, ResolvedDevice]:
    """Resolve every device, handing out the host's GPUs in spec order."""
    devices = {}
    for spec in specs:
        device = resolve(spec, gpus_available)
        gpus_available -= device.gpus
        devices[spec.name] = device
    return devices
