"""A device spec resolved against its profile: the spec's own fields over the profile's defaults,
power overrides applied, the host's GPUs handed out in spec order."""

from __future__ import annotations

from dataclasses import replace

from testbed.emulation.config import DeviceSpec
from testbed.emulation.power import resolve_power
from testbed.emulation.profiles import (
    ResolvedDevice,
    ResourceUnavailable,
    get_profile,
    normalize_arch,
)
from testbed.emulation.units import parse_memory


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
        power=resolve_power(profile.power, spec.power),
    )
    if gpus_available is None or device.gpus <= gpus_available:
        return device
    return _missing_gpu(device, gpus_available, spec.on_missing_gpu)


def resolve_devices(specs: list[DeviceSpec], gpus_available: int) -> dict[str, ResolvedDevice]:
    """Resolve every device, handing out the host's GPUs in spec order."""
    devices = {}
    for spec in specs:
        device = resolve(spec, gpus_available)
        gpus_available -= device.gpus
        devices[spec.name] = device
    return devices


def _missing_gpu(device: ResolvedDevice, available: int, policy: str) -> ResolvedDevice:
    wanted = f"device {device.name!r} asks for {device.gpus} GPU(s) but {available} are available"
    if policy == "refuse":
        raise ResourceUnavailable(
            f"{wanted}; set on_missing_gpu: fallback on the device to run it on the CPU instead"
        )
    note = f"{wanted}; running with {available} (on_missing_gpu: fallback)"
    return replace(device, gpus=available, notes=device.notes + (note,))
