"""Typed cluster spec (devices, links, link schedule) that the experiment spec embeds."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from testbed.emulation.naming import check_device_name
from testbed.emulation.power import RADIOS
from testbed.emulation.profiles import PROFILES, normalize_arch
from testbed.emulation.units import format_rate, parse_memory, parse_percent, parse_rate, parse_time

__all__ = [
    "ClusterSpec",
    "DeviceSpec",
    "PowerSpec",
    "LinkSettings",
    "LinkSpec",
    "FAULTS",
    "ScheduleEntry",
    "Selector",
    "link_label",
    "parse_memory",
    "parse_percent",
    "parse_rate",
    "parse_time",
    "selector_of",
]

Selector = str | tuple[str, str]
"""A device name (its access link) or a pair of device names (the path between them)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PowerSpec(_Strict):
    """Overrides of a device's power model (`emulation.power`); unset fields keep the profile's."""

    idle_w: float | None = Field(default=None, ge=0, description="watts when idle")
    busy_w: float | None = Field(default=None, ge=0, description="watts at full CPU quota")
    radio: Literal[tuple(RADIOS)] | None = Field(  # type: ignore[valid-type]
        default=None, description="link kind, sets the energy per bit: wired, wifi or lte"
    )
    tx_nj_per_bit: float | None = Field(default=None, ge=0, description="nJ per bit sent")
    rx_nj_per_bit: float | None = Field(default=None, ge=0, description="nJ per bit received")

    @model_validator(mode="after")
    def _ordered(self) -> PowerSpec:
        if self.idle_w is not None and self.busy_w is not None and self.idle_w > self.busy_w:
            raise ValueError(
                f"idle_w {self.idle_w} is above busy_w {self.busy_w}; expected idle_w <= busy_w"
            )
        return self


class DeviceSpec(_Strict):
    """One emulated device; unset fields come from its profile."""

    name: str
    profile: str = "edge"
    cpus: float | None = Field(
        default=None, gt=0, description="CPU cap as in docker --cpus, e.g. 0.5"
    )
    memory: str | None = Field(
        default=None, description="memory cap as in docker --memory, e.g. '512m'"
    )
    arch: str | None = Field(default=None, description="amd64 or arm64")
    gpus: int | None = Field(default=None, ge=0)
    on_missing_gpu: Literal["refuse", "fallback"] = "refuse"
    power: PowerSpec | None = Field(default=None, description="power model overrides")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_device_name(value)

    @field_validator("profile")
    @classmethod
    def _known_profile(cls, value: str) -> str:
        PROFILES.get(value)  # raises, listing the known profiles
        return value

    @field_validator("memory")
    @classmethod
    def _memory(cls, value: str | None) -> str | None:
        if value is not None:
            parse_memory(value)
        return value

    @field_validator("arch")
    @classmethod
    def _arch(cls, value: str | None) -> str | None:
        return None if value is None else normalize_arch(value)

    @model_validator(mode="after")
    def _power_resolves(self) -> DeviceSpec:
        from testbed.emulation.power import resolve_power

        resolve_power(PROFILES.get(self.profile).power, self.power)  # raises with the reason
        return self


class LinkSettings(_Strict):
    """Link properties spelled as tc spells them; None leaves a property as it is."""

    rate: str | None = Field(default=None, description="e.g. '100mbit'")
    delay: str | None = Field(default=None, description="one-way, each direction, e.g. '20ms'")
    jitter: str | None = Field(default=None, description="e.g. '5ms'; needs delay")
    loss: str | None = Field(default=None, description="each direction, e.g. '1%'")

    @field_validator("rate")
    @classmethod
    def _rate(cls, value: str | None) -> str | None:
        if value is not None:
            parse_rate(value)
        return value

    @field_validator("delay", "jitter")
    @classmethod
    def _time(cls, value: str | None) -> str | None:
        if value is not None:
            parse_time(value)
        return value

    @field_validator("loss")
    @classmethod
    def _loss(cls, value: str | None) -> str | None:
        if value is not None:
            parse_percent(value)
        return value

    @property
    def rate_bps(self) -> int | None:
        return None if self.rate is None else parse_rate(self.rate)

    @property
    def delay_s(self) -> float:
        return 0.0 if self.delay is None else parse_time(self.delay)

    @property
    def jitter_s(self) -> float:
        return 0.0 if self.jitter is None else parse_time(self.jitter)

    @property
    def loss_pct(self) -> float:
        return 0.0 if self.loss is None else parse_percent(self.loss)

    def netem_settings(self) -> dict[str, str]:
        """The settings only netem can realise (non-zero delay, jitter, loss)."""
        wanted = {"delay": self.delay_s, "jitter": self.jitter_s, "loss": self.loss_pct}
        return {k: str(getattr(self, k)) for k, v in wanted.items() if v > 0}

    def settings(self) -> dict[str, str]:
        return {
            k: v
            for k, v in self.model_dump(include=set(LinkSettings.model_fields)).items()
            if v is not None
        }

    def merged(self, changes: LinkSettings) -> LinkSettings:
        return LinkSettings(**{**self.settings(), **changes.settings()})

    def describe(self) -> str:
        parts = [f"rate {format_rate(self.rate_bps)}"] if self.rate_bps else []
        parts += [f"{k} {v}" for k, v in self.netem_settings().items()]
        return ", ".join(parts) or "unshaped"


class _Selected(LinkSettings):
    device: str | None = Field(default=None, description="a device's access link (both directions)")
    pair: tuple[str, str] | None = Field(default=None, description="the path between two devices")

    @model_validator(mode="after")
    def _one_selector(self) -> _Selected:
        if (self.device is None) == (self.pair is None):
            raise ValueError(
                f"link {self.model_dump(exclude_none=True)} must name exactly one of "
                "'device: NAME' or 'pair: [A, B]'"
            )
        if self.pair is not None and self.pair[0] == self.pair[1]:
            raise ValueError(f"link pair {list(self.pair)} must name two different devices")
        if not self.settings() and getattr(self, "cpus", None) is None:
            raise ValueError(
                f"link {self.label} sets nothing; expected rate, delay, jitter or loss"
            )
        return self

    @property
    def selector(self) -> Selector:
        return self.device if self.device is not None else self.pair  # type: ignore[return-value]

    @property
    def key(self) -> tuple[str, ...]:
        return selector_of(self.selector)

    @property
    def label(self) -> str:
        return link_label(self.key)

    def link_settings(self) -> LinkSettings:
        return LinkSettings(**self.settings())


class LinkSpec(_Selected):
    """Shaping for one device's access link or for the path between two devices."""

    @model_validator(mode="after")
    def _jitter_needs_delay(self) -> LinkSpec:
        check_jitter(self.key, self)
        return self


Fault = Literal["kill", "pause", "resume", "link-down", "link-up"]
FAULTS: tuple[str, ...] = ("kill", "pause", "resume", "link-down", "link-up")
WORKER_FAULTS = ("kill", "pause", "resume")


class ScheduleEntry(_Selected):
    """At `at_s` seconds after training starts, change a declared link's settings or (cpus) a
    device's CPU quota, or inject a fault: kill (SIGKILL) or pause (freeze) / resume a device's
    processes, take its link down / up, or kill, pause or resume the parameter server wherever it
    runs (`worker: ps`)."""

    at_s: float = Field(ge=0, description="seconds after training starts (all workers started)")
    cpus: float | None = Field(
        default=None, gt=0, description="the device's new CPU quota, as docker update --cpus"
    )
    fault: Fault | None = Field(default=None, description="instead of link settings: " + " | ".join(FAULTS))
    worker: Literal["ps"] | None = Field(default=None, description="a fault's target: the parameter server")

    @model_validator(mode="after")
    def _cpus_on_a_device(self) -> ScheduleEntry:
        if self.cpus is not None and self.device is None:
            raise ValueError(f"schedule entry at {self.at_s}s sets cpus on {self.label}; "
                             "expected 'device: NAME' (a CPU quota belongs to a device)")
        return self
    @model_validator(mode="after")
    def _one_selector(self) -> ScheduleEntry:  # replaces _Selected's check for faults
        if self.fault is None:
            if self.worker is not None:
                raise ValueError(f"schedule entry at {self.at_s}s names worker {self.worker!r} "
                                 "without a fault; expected fault: kill, pause or resume")
            return super()._one_selector()  # type: ignore[return-value]
        what = f"schedule entry at {self.at_s}s (fault {self.fault!r})"
        if self.settings() or self.cpus is not None:
            raise ValueError(f"{what} also sets {self.settings() or {'cpus': self.cpus}}; "
                             "expected a fault or new settings, not both")
        if self.pair is not None or (self.device is None) == (self.worker is None):
            raise ValueError(f"{what} must name exactly one of 'device: NAME' or 'worker: ps'")
        if self.worker is not None and self.fault not in WORKER_FAULTS:
            raise ValueError(f"{what}: worker {self.worker!r} can only be killed, paused or "
                             "resumed; link faults take a device")
        return self

    @property
    def key(self) -> tuple[str, ...]:
        return ("worker:" + self.worker,) if self.worker is not None else super().key

    @property
    def label(self) -> str:
        if self.worker is not None:
            return f"worker {self.worker!r}"
        return super().label


def check_jitter(key: tuple[str, ...], settings: LinkSettings) -> None:
    """Jitter varies a delay: refuse it on a link whose delay is unset or zero."""
    if settings.jitter_s and not settings.delay_s:
        raise ValueError(
            f"link {link_label(key)} sets jitter {settings.jitter!r} without a delay; "
            "expected a delay too, e.g. delay: 20ms"
        )


def selector_of(target: Selector | list[str]) -> tuple[str, ...]:
    """Canonical key: ('dev',) or the sorted pair, so [a, b] and [b, a] are one link."""
    if isinstance(target, str):
        return (target,)
    if (
        isinstance(target, (tuple, list))
        and len(target) == 2
        and all(isinstance(x, str) for x in target)
    ):
        return tuple(sorted(target))
    raise ValueError(f"link selector {target!r} is not understood; expected 'dev' or ('a', 'b')")


def link_label(key: tuple[str, ...]) -> str:
    """'device 'a'' or 'pair 'a'-'b'' for messages, from a canonical key."""
    return f"device {key[0]!r}" if len(key) == 1 else f"pair {key[0]!r}-{key[1]!r}"


class ClusterSpec(_Strict):
    """The devices to emulate, their links, and link changes over time."""

    backend: Literal["local", "docker"] = "local"
    # docker only: run on the running containers of this compose/Swarm stack (`docker_stack`)
    stack: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    devices: list[DeviceSpec] = Field(min_length=1)
    links: list[LinkSpec] = Field(default_factory=list)
    schedule: list[ScheduleEntry] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> ClusterSpec:
        if self.stack is not None and self.backend != "docker":
            raise ValueError(
                f"stack {self.stack!r} needs backend 'docker' (got {self.backend!r}): only the "
                "docker backend adopts a standing stack's containers"
            )
        names = [d.name for d in self.devices]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"device names {duplicates} are used more than once")
        seen: set[tuple[str, ...]] = set()
        for link in self.links:
            self._check_refs(link, names)
            if link.key in seen:
                raise ValueError(f"link {link.label} is declared twice")
            seen.add(link.key)
        for entry in self.schedule:
            if entry.worker is not None:
                continue
            self._check_refs(entry, names)
            if entry.fault is None and entry.key not in seen and entry.settings():
                raise ValueError(
                    f"schedule entry at {entry.at_s}s changes {entry.label}, which is not "
                    f"declared under links; declared: {[link.label for link in self.links]}"
                )
        self._check_timeline()
        return self

    def _check_timeline(self) -> None:
        """Each link's settings after every schedule entry must still be valid."""
        current = {link.key: link.link_settings() for link in self.links}
        for entry in (e for e in self.timeline() if e.fault is None and e.settings()):
            current[entry.key] = current[entry.key].merged(entry.link_settings())
            check_jitter(entry.key, current[entry.key])

    @staticmethod
    def _check_refs(link: _Selected, names: list[str]) -> None:
        for name in link.key:
            if name not in names:
                raise ValueError(f"link {link.label} names unknown device {name!r}; known: {names}")

    def device(self, name: str) -> DeviceSpec:
        for device in self.devices:
            if device.name == name:
                return device
        raise KeyError(f"unknown device {name!r}; known: {[d.name for d in self.devices]}")

    def timeline(self) -> list[ScheduleEntry]:
        """Schedule entries in the order they fire."""
        return sorted(self.schedule, key=lambda entry: entry.at_s)
