"""What a dp-async run measured, in the planner's terms (time, power, energy, EDP), read from
its summary and events: the ground truth a prediction is compared with. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from testbed.planner.costs import Costs


@dataclass(frozen=True)
class Outcome(Costs):
    """Startup (launch to the start of training) plus training (S steps), and the meter's
    energy over both."""

    startup_s: float
    train_s: float
    energy_j: float
    steps: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        return self.costs()


def event_t(events: Sequence[Mapping[str, Any]], kind: str) -> float:
    """When the run first recorded an event of this kind."""
    for e in events:
        if e["event"] == kind:
            return float(e["t"])
    raise KeyError(f"no {kind!r} event; the run did not get that far")


def outcome(summary: Mapping[str, Any], events: Sequence[Mapping[str, Any]]) -> Outcome:
    """A completed dp-async run's measured outcome (its summary must hold the meter's power)."""
    power = summary.get("power") or {}
    if "energy_j" not in power:
        raise ValueError("the run has no metered energy: expected a cluster whose devices have "
                         "power models (summary.power.energy_j)")  # fmt: skip
    startup = event_t(events, "training_started") - event_t(events, "workers_started")
    steps = steps_per_device(summary["workers"], events)
    energy = float(power["energy_j"]) + float(power.get("startup", {}).get("energy_j", 0.0))
    return Outcome(startup, float(summary["train_time_s"]), energy, steps)


def steps_per_device(
    workers: Mapping[str, Mapping[str, Any]], events: Sequence[Mapping[str, Any]]
) -> dict[str, int]:
    """Steps each device took, keyed like a prediction's (by device, not by worker): the
    workers' steps summed over the devices the run placed them on (`workers_planned`)."""
    placed = next((e.get("devices") or {} for e in events if e["event"] == "workers_planned"), {})
    steps: dict[str, int] = {}
    for name, w in workers.items():
        device = placed.get(name) or name
        steps[device] = steps.get(device, 0) + int(w["step"])
    return steps


def relative_error(predicted: float, measured: float) -> float:
    """|predicted - measured| / measured."""
    return abs(predicted - measured) / measured
