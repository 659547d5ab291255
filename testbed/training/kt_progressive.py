"""Progressive section-kt: the student's sections trained one after another.

Section i trains for `training.iterations` steps on the output of the already trained student
sections before it (`KtSession.compile_section_step`), each section over the same batches (a
fresh sampler per section, as the kd and independent students get them), so every section sees
the data budget of one whole-student run. The student's `train`/`eval` curve runs over all
sections' steps with one clock: time to accuracy counts every section's training.
"""

from __future__ import annotations

from typing import Any

from testbed.training.kt_phase import Phase
from testbed.training.kt_session import KtSession
from testbed.training.loop import train


class OffsetRecorder:
    """A recorder view that continues steps and clocks where the previous sections left off:
    `step` by `steps`, the loop's `wall_s` by `wall_s`, the training seconds `train_s` by
    `train_s`."""

    def __init__(self, rec: Any, steps: int, wall_s: float, train_s: float) -> None:
        self.rec, self.offset = rec, {"step": steps, "wall_s": wall_s, "train_s": train_s}
        self.run = rec.run

    def point(self, kind: str, **fields: float) -> None:
        self.rec.point(kind, **{k: v + self.offset.get(k, 0) for k, v in fields.items()})


def train_progressive(session: KtSession, rec: Any, progress: bool = True) -> dict[str, Any]:
    """Train every section in turn; returns the loop's results over all of them (steps are
    section steps: sections x training.iterations)."""
    spec, n = session.spec, len(session.sections)
    iterations = spec.training.iterations
    steps, wall_s, train_s, evals, parts = 0, 0.0, 0.0, [], []
    evaluate = session.evaluator()  # one compiled evaluation of the assembled student for all
    for i in range(n):
        phase = Phase(spec, session.data, lambda i=i: session.compile_section_step(i),
                      lambda: evaluate)
        rec.run.event("section_started", section=i, of=n, from_step=steps)
        result = train(phase, OffsetRecorder(rec, steps, wall_s, train_s),  # type: ignore[arg-type]
                       progress)
        evals += [{**e, "step": e["step"] + steps, "train_s": e["train_s"] + train_s}
                  for e in result["evaluations"]]
        parts.append({"section": i, "train_time_s": result["train_time_s"],
                      "final_test_accuracy": result["final_test_accuracy"]})
        steps += iterations
        wall_s += result["loop_wall_s"]
        train_s += result["train_time_s"]
    return {"iterations": steps, "final_test_accuracy": evals[-1]["test_acc"],
            "best_test_accuracy": max(e["test_acc"] for e in evals), "evaluations": evals,
            "mean_it_s": steps / train_s, "train_time_s": train_s, "loop_wall_s": wall_s,
            "progressive": {"sections": n, "steps_per_section": iterations, "parts": parts}}
