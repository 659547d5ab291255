"""Time every stage's step while all stages step at once, one process each: the co-run t_i.

`split_profile.time_stages` times each stage alone on an idle machine. Workers of a pipeline run
at the same time, so they share caches, memory bandwidth and (on small hosts) the cores
themselves. Stepping every stage concurrently in its own process, with no messages at all,
isolates what that sharing costs: the gap between this profile and a distributed run is the
runtime's own overhead (transport, serialization, scheduling).
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Sequence
from typing import Any

from testbed.spec.experiment import Spec
from testbed.spec.load import spec_to_dict

_REPS = 30
_WAIT_S = 300.0  # a child that never arrives breaks the barrier instead of hanging the rest


def _child(raw: dict[str, Any], split: list[str] | None, index: int, reps: int,
           barrier: Any, out: Any) -> None:
    """In a fresh process: build the stages, warm stage `index` up, wait for all, time it."""
    from testbed.planner.split_profile import build, median_times, sg_step_fns
    from testbed.training.tfsetup import configure_threads

    spec = Spec.model_validate(raw)
    configure_threads(spec.training.threads or 1)
    stages, sgs, classes = build(spec, split)
    last = index == len(stages) - 1
    step, update = sg_step_fns(stages[index], None if last else sgs[index], last,
                               spec.training.batch_size, classes, spec.algorithm.sg.grad_scale)

    def both() -> None:
        step()
        if update is not None:
            update()

    median_times(both, 3)  # warm up (tracing) before the start line
    barrier.wait(_WAIT_S)
    wall, cpu = median_times(both, reps, warmup=0)
    barrier.wait(_WAIT_S)  # nobody finishes early and leaves the others an idle machine
    out.put((index, wall, cpu))


def corun_stage_times(spec: Spec, split_after: Sequence[str] | None, stages: int,
                      reps: int = _REPS, timeout_s: float = 600.0) -> list[dict[str, float]]:
    """Per stage: median wall and CPU seconds of its sg step + SG update, all stages at once."""
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(stages), ctx.Queue()
    raw, split = spec_to_dict(spec), list(split_after) if split_after is not None else None
    procs = [ctx.Process(target=_child, args=(raw, split, i, reps, barrier, out), daemon=True)
             for i in range(stages)]
    for p in procs:
        p.start()
    try:
        results = sorted(out.get(timeout=timeout_s) for _ in procs)
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
    return [{"stage": i, "wall_s": w, "cpu_s": c} for i, w, c in results]
