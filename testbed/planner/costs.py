"""The planner's four objectives derived from a run's startup, training time, energy and steps:
one definition for predictions (`estimate.Estimate`) and measurements (`outcome.Outcome`)."""

from __future__ import annotations


class Costs:
    """Time, average power, energy and EDP of a configuration (mixin over its fields)."""

    startup_s: float
    train_s: float
    energy_j: float
    steps: dict[str, int]

    @property
    def time_s(self) -> float:
        return self.startup_s + self.train_s

    @property
    def power_w(self) -> float:
        """Average power over the whole time (startup and training)."""
        return self.energy_j / self.time_s

    @property
    def edp(self) -> float:
        return self.energy_j * self.time_s

    @property
    def step_s(self) -> float:
        """Training seconds per step of the whole cluster."""
        return self.train_s / sum(self.steps.values())

    def metric(self, name: str) -> float:
        return {"time": self.time_s, "power": self.power_w, "energy": self.energy_j,
                "edp": self.edp}[name]  # fmt: skip

    def costs(self) -> dict[str, object]:
        return {"time_s": self.time_s, "startup_s": self.startup_s, "train_s": self.train_s,
                "step_s": self.step_s, "power_w": self.power_w, "energy_j": self.energy_j,
                "edp_js": self.edp, "steps": self.steps}  # fmt: skip
