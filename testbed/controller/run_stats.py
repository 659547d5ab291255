"""Run-level numbers from the workers' reports: throughput, per-stage times, bytes per step."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from testbed.metrics.time_to_accuracy import EvalPoint
from testbed.modes import get_mode
from testbed.runtime.wire.serde_ps import Evaluation
from testbed.spec.experiment import Spec


def _traffic(workers: dict[str, Any], to_ps: bool) -> dict[str, float]:
    """Bytes sent by all workers to the PS, or to other trainers: wire (framed), message, raw."""
    out = {"messages": 0.0, "wire_bytes": 0.0, "message_bytes": 0.0, "raw_bytes": 0.0}
    for w in workers.values():
        for key, counts in w.get("peers", {}).items():
            direction, peer = key.split(":", 1)
            if direction == "sent" and (peer == "ps") == to_ps:
                for k in out:
                    out[k] += counts.get(k, 0)
    return out


def run_stats(spec: Spec, workers: dict[str, Any]) -> dict[str, Any]:
    """mean_it_s (steady state), per-worker step times, stage-to-stage bytes per iteration."""
    steady = {n: w.get("steady", {}) for n, w in workers.items()}
    rates = [s["it_s"] for s in steady.values() if s.get("it_s")]
    # replicas add up; pipeline stages are as fast as the slowest one
    summed = get_mode(spec.job.mode).throughput == "sum"
    it_s = sum(rates) if summed else min(rates, default=0.0)
    links = _traffic(workers, to_ps=False)
    ps = _traffic(workers, to_ps=True)
    n = spec.training.iterations
    return {
        "mean_it_s": it_s,
        "mean_samples_s": it_s * spec.training.batch_size,
        "per_worker": {
            name: {k: v for k, v in s.items() if k == "it_s" or k.endswith("_per_step_s")}
            for name, s in steady.items()
        },
        "transfer": {
            "stage_links": links,
            "to_ps": ps,
            "wire_bytes_per_step": links["wire_bytes"] / n,
            "raw_bytes_per_step": links["raw_bytes"] / n,
            "wire_over_raw": links["wire_bytes"] / links["raw_bytes"]
            if links["raw_bytes"]
            else None,
        },
    }


def version_times(workers: dict[str, Any]) -> dict[int, float]:
    """When each weights version existed on every worker that holds weights: the latest of
    their snapshot times (seconds since the run's t0), for versions all of them snapshotted."""
    snaps = [w["snapshots"] for w in workers.values() if w.get("snapshots")]
    if not snaps:
        return {}
    common = set.intersection(*(set(s) for s in snaps))
    return {int(v): max(float(s[v]) for s in snaps) for v in common}


def eval_points(evals: Sequence[Evaluation], workers: dict[str, Any],
                start_s: float) -> list[EvalPoint]:
    """The parameter server's evaluations timed from the start of training: at the workers'
    snapshot of that version (stage modes), else when the server made it (dp-async)."""
    times = version_times(workers)
    return [EvalPoint(e.step, times.get(e.step, e.ready_s) - start_s, e.test_accuracy)
            for e in evals]
