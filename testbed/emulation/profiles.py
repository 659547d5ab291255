"""Device profiles and their resolution against a device spec.

Generic profiles (edge, cloud, gpu, jetson) cap resources only. Device classes stand for real
boards: a `speed` relative to the reference class (the desktop), realised on this host as a CPU
quota of `speed` x `REFERENCE_CPUS` x the class's measured `QUOTA_CALIBRATION` with one
intra-op thread, a memory cap, and a power model
(`emulation.power`). Every number's source is in `docs/devices.md` and next to the number below.
"""

from __future__ import annotations

import glob
import math
import platform
from dataclasses import dataclass, field

from testbed.emulation.power import PowerModel
from testbed.registry import Registry


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
    speed: float | None = None  # training speed relative to the reference class (desktop = 1)
    power: PowerModel | None = None
    speed_source: str = ""


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
    power: PowerModel | None = None

    @property
    def threads(self) -> int | None:
        """Thread count to give numeric libraries: the CPU cap rounded up, at least 1."""
        return None if self.cpus is None else max(1, math.ceil(self.cpus))


PROFILES: Registry[Profile] = Registry("device profile")

REFERENCE_CPUS = 1.0
"""CPU quota of the reference class (speed 1.0). The three seed classes' quotas add up to 1.67
CPUs, which leaves room on a 2-core host for the controller and the transport."""
PROFILES.register("edge")(Profile(cpus=1.0, memory="1g", description="1 CPU, 1 GiB"))
PROFILES.register("cloud")(Profile(description="uncapped CPU and memory"))
PROFILES.register("gpu")(Profile(gpus=1, description="uncapped, one GPU"))
PROFILES.register("jetson")(
    Profile(cpus=4.0, memory="4g", arch="arm64", description="4 CPUs, 4 GiB, arm64")
)

# The seed's platforms (Gu, Kong, Munir, Kim, ICPADS 2019). Speed: peak FP32 throughput of each
# GPU (CUDA cores x 2 FLOP x clock), from NVIDIA's specifications: GTX 1050 640 cores at
# 1455 MHz boost = 1862 GFLOPS; Jetson TX2 256 Pascal cores at 1300 MHz = 666 GFLOPS; Jetson TX1
# 256 Maxwell cores at 998 MHz = 511 GFLOPS. They run amd64 here: an arm64 image under QEMU
# would add an unrelated ~10x slowdown (set arch: arm64 on the device to have it anyway).
_GFLOPS = {"desktop": 2 * 640 * 1.455, "jetson-tx2": 2 * 256 * 1.300, "jetson-tx1": 2 * 256 * 0.998}
SPEED_SOURCE = (
    "peak FP32 GFLOPS from NVIDIA's specifications: GTX 1050 1862, Jetson TX2 666, Jetson TX1 511"
)


QUOTA_CALIBRATION = {"desktop": 1.0, "jetson-tx2": 1 / 0.9676, "jetson-tx1": 1 / 0.9021}
"""Quota per unit of speed, measured on this host kind: a device needs more CPU per training step
the smaller its quota, so at quota = speed x REFERENCE_CPUS the TX2 trained at 0.9676 and the TX1
at 0.9021 of its stated speed (`make bench NAME=devices`, commit eff1f98: the medians over the
five CIFAR models of achieved / stated; docs/devices.md). Each class's quota is raised by that
factor; the benchmark's next run is the check. On another host kind, re-measure."""


def _speed(key: str) -> float:
    return round(_GFLOPS[key] / _GFLOPS["desktop"], 4)


def _device_class(key: str, memory: str, power: PowerModel, description: str) -> None:
    speed = _speed(key)
    PROFILES.register(key)(Profile(
        cpus=round(speed * REFERENCE_CPUS * QUOTA_CALIBRATION[key], 4), memory=memory,
        description=description, speed=speed, power=power, speed_source=SPEED_SOURCE,
    ))  # fmt: skip


_device_class(
    "desktop", "8g",
    PowerModel(
        idle_w=45.0, busy_w=170.0,
        source="busy: Intel Core i7-2600 TDP 95 W (Intel ARK) + GeForce GTX 1050 board power "
        "75 W (NVIDIA); idle: assumption (no datasheet gives it), 45 W for such a desktop at "
        "the wall",
    ),
    "the seed's desktop (i7-2600 + GTX 1050), speed 1.0; memory 8 GB (assumption: the seed "
    "does not state it)",
)  # fmt: skip
_device_class(
    "jetson-tx2", "8g",
    PowerModel(
        idle_w=2.0, busy_w=15.0,
        source="busy: Jetson TX2 Max-P/MAXN module power 15 W (NVIDIA TX2 datasheet; Max-Q is "
        "7.5 W); idle: assumption, 2 W (the eLinux Jetson TK1 page measures 1.6 W board idle)",
    ),
    "NVIDIA Jetson TX2 (8 GB LPDDR4, NVIDIA datasheet), speed 0.357 of the desktop",
)  # fmt: skip
_device_class(
    "jetson-tx1", "4g",
    PowerModel(
        idle_w=2.0, busy_w=10.0,
        source="busy: Jetson TX1 typical 10 W under load (NVIDIA launch figures; the datasheet "
        "range is 6-15 W); idle: assumption, 2 W as for the TX2",
    ),
    "NVIDIA Jetson TX1 (4 GB LPDDR4, NVIDIA datasheet), speed 0.274 of the desktop",
)  # fmt: skip

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


def gpu_count() -> int:
    """NVIDIA GPUs visible on this host (device nodes /dev/nvidiaN)."""
    return len(glob.glob("/dev/nvidia[0-9]*"))
