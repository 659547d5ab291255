"""The failure policy of a distributed run (`job.on_failure`), and what its failures cost.

With `restart`, a dead or hung worker ends the attempt: every worker is stopped and all of
them start again from the latest checkpoint the parameter server wrote (from step 0 when
there is none). Every mode rewinds all its workers: a pipeline's in-flight batches die with
the worker that held them, and a consistent restart point is what keeps the accuracy of a
run with failures within reach of the one without. Each failure, restart and lost step is
recorded in the run's events and metrics (kind "failure") and in the summary.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from testbed.spec.experiment import JobCfg
from testbed.training import checkpoint


def resume_point(directory: Path) -> tuple[int, float]:
    """(step, wall seconds) of the latest checkpoint in `directory`; (0, 0.0) when none."""
    steps = checkpoint.steps(directory)
    if not steps:
        return 0, 0.0
    return steps[-1], float(checkpoint.read_meta(checkpoint.path_for(directory, steps[-1])).get("wall_s", 0.0))


@dataclass
class Failure:
    """One failure: when, why, how far training had got and where it continued from."""

    t: float
    reason: str
    reached_step: int
    resumed_from: int | None = None
    restarted: bool = False

    @property
    def steps_lost(self) -> int:
        return 0 if self.resumed_from is None else max(0, self.reached_step - self.resumed_from)


@dataclass
class Recovery:
    """Counts failures and decides, per `job.on_failure` and `job.max_restarts`, whether to restart."""

    job: JobCfg
    report: Callable[..., None]
    failures: list[Failure] = field(default_factory=list)
    attempt_step: int = 0  # where the current attempt started
    reached: int = 0  # the slowest trainer's step in the current attempt
    _resumed: bool = True

    @property
    def restarts(self) -> int:
        return sum(f.restarted for f in self.failures)

    def start_attempt(self, step: int) -> None:
        """An attempt begins at checkpoint `step`; a failure before it learns where it went."""
        if self.failures and self.failures[-1].restarted:
            last = self.failures[-1]
            last.resumed_from = step
            # a checkpoint at `step` means every trainer got there, whatever the last poll saw
            last.reached_step = max(last.reached_step, step)
            self._resumed = False
        self.attempt_step = self.reached = step

    def observe(self, slowest: int) -> None:
        """The slowest trainer's step, from each health poll."""
        self.reached = max(self.reached, slowest)
        if not self._resumed and slowest > self.attempt_step:
            self._resumed = True  # training runs again after a restart
            self.report("training_resumed", step=slowest, restart=self.restarts)

    def failed(self, reason: str) -> bool:
        """Record a failure; True when the policy restarts the workers."""
        restart = self.job.on_failure == "restart" and self.restarts < self.job.max_restarts
        self.failures.append(Failure(time.time(), reason.splitlines()[0], self.reached, None, restart))
        if restart:
            self.report("restart", restart=self.restarts, max_restarts=self.job.max_restarts,
                        reached_step=self.reached)  # fmt: skip
        return restart

    def point(self) -> dict[str, float] | None:
        """The metrics point of the last restart once its attempt started ("failure" kind)."""
        if not self.failures or self.failures[-1].resumed_from is None:
            return None
        f = self.failures[-1]
        return {"step": float(f.resumed_from), "failures": float(len(self.failures)),  # type: ignore[arg-type]
                "restarts": float(self.restarts), "reached_step": float(f.reached_step),
                "steps_lost": float(f.steps_lost)}  # fmt: skip

    def summary(self) -> dict[str, Any]:
        return {"resilience": {
            "on_failure": self.job.on_failure, "max_restarts": self.job.max_restarts,
            "restarts": self.restarts, "steps_lost": sum(f.steps_lost for f in self.failures),
            "failures": [{**asdict(f), "steps_lost": f.steps_lost} for f in self.failures],
        }}  # fmt: skip
