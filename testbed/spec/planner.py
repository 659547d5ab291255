"""The `planner:` block of a spec: pick the cluster configuration before training (dp-async).

With it, `testbed run` profiles each candidate device briefly, estimates time, power, energy and
EDP of every configuration (`testbed.planner`), runs the remaining steps on the one the
preference ranks first, and records prediction beside measurement.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, field_validator

METRICS = ("time", "power", "energy", "edp")


def check_preference(prefer: str | Mapping[str, float]) -> dict[str, float]:
    """The preference as weights per metric; ValueError naming the bad value and the form."""
    if isinstance(prefer, str):
        if prefer not in METRICS:
            raise ValueError(
                f"unknown preference {prefer!r}; expected one of {', '.join(METRICS)} "
                "or weights such as {time: 1, energy: 2}"
            )
        return {prefer: 1.0}
    unknown = sorted(set(prefer) - set(METRICS))
    if unknown:
        raise ValueError(
            f"unknown metric {unknown[0]!r}; expected weights over {', '.join(METRICS)}"
        )
    weights = {k: float(v) for k, v in prefer.items()}
    if any(v < 0 for v in weights.values()) or not any(v > 0 for v in weights.values()):
        raise ValueError(f"got weights {weights}; expected >= 0 and at least one > 0")
    return weights


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProfileCfg(_Strict):
    """Profiling windows, in steps, of each device's one-device run (the seed: 300 warm-up,
    100 for step time, 100 for power counters)."""

    warmup_steps: PositiveInt = Field(10, description="steps before the time window")
    time_steps: PositiveInt = Field(30, description="steps whose times give the step time")
    power_steps: PositiveInt = Field(20, description="steps whose counters add to the power fit")

    @property
    def total(self) -> int:
        return self.warmup_steps + self.time_steps + self.power_steps


class PlannerCfg(_Strict):
    prefer: str | dict[str, float] = Field(
        "time", description="time | power | energy | edp, or weights over them, e.g. {time: 1, energy: 1}"
    )
    profile: ProfileCfg = ProfileCfg()
    candidates: list[str] | None = Field(
        None, description="devices to choose among; default every device of the cluster"
    )

    @field_validator("prefer", mode="before")
    @classmethod
    def _prefer(cls, value: Any) -> Any:
        if isinstance(value, (str, dict)):
            check_preference(value)
        return value


def check_planner(planner: PlannerCfg | None, mode: str, cluster: Any) -> None:
    """The planner picks devices for dp-async, among the devices of a cluster."""
    if planner is None:
        return
    if mode != "dp-async":
        raise ValueError(
            f"planner: picks the devices of a dp-async run; got job.mode {mode!r}, "
            "expected job.mode: dp-async"
        )
    if cluster is None:
        raise ValueError("planner: needs a cluster to choose devices from; expected cluster: "
                         "{devices: [...]} with at least one device")  # fmt: skip
    names = [d.name for d in cluster.devices]
    unknown = [c for c in planner.candidates or [] if c not in names]
    if unknown:
        raise ValueError(
            f"planner.candidates: {unknown[0]!r} names no device of the cluster; known: "
            f"{', '.join(names)}"
        )
