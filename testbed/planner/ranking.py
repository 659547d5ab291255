"""A cluster plan: every configuration estimated and ranked for a preference (pure)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from testbed.planner.choose import Preference, check_preference, rank
from testbed.planner.cluster import DeviceProfile, Infeasible, Links, Workload, enumerate_configs
from testbed.planner.estimate import Estimate, estimate


@dataclass(frozen=True)
class ClusterPlan:
    """Feasible configurations best first for `prefer`; the infeasible ones and why."""

    prefer: dict[str, float]
    ranked: list[Estimate]
    infeasible: list[Infeasible]
    estimation_s: float

    @property
    def pick(self) -> Estimate:
        if not self.ranked:
            reasons = "; ".join(f"{i.config.label}: {i.reason}" for i in self.infeasible)
            raise ValueError(f"no feasible configuration: {reasons or 'no candidate devices'}")
        return self.ranked[0]

    def rows(self) -> list[dict[str, Any]]:
        """The table `testbed plan` prints: rank, configuration and its predicted numbers."""
        rows = [{"rank": i + 1, **e.as_dict()} for i, e in enumerate(self.ranked)]
        rows += [{"rank": None, "config": i.config.label, "infeasible": i.reason}
                 for i in self.infeasible]  # fmt: skip
        return rows

    def as_dict(self) -> dict[str, Any]:
        return {"prefer": self.prefer, "pick": self.pick.config.label if self.ranked else None,
                "estimation_s": self.estimation_s, "configs": self.rows()}  # fmt: skip


def make_plan(
    profiles: Mapping[str, DeviceProfile], links: Links, work: Workload, prefer: Preference
) -> ClusterPlan:
    """Estimate every configuration of the profiled devices and rank them."""
    started = time.perf_counter()
    weights = check_preference(prefer)
    configs = enumerate_configs(profiles)
    estimates = [estimate(c, profiles, links, work) for c in configs.feasible]
    ranked = rank(estimates, weights)
    return ClusterPlan(weights, ranked, configs.infeasible, time.perf_counter() - started)
