"""The planner's thin I/O part: profile each candidate device with a short one-device dp-async
run (the parameter server on it), probe the links, and read the runs back as `DeviceProfile`s.

Windows (in steps, `planner.profile`): warm-up, then the time window (step times from the
server's step records, `record_every`), then the power window; the power fit uses every meter
sample of the run (startup gives the idle end, training the busy end). A run that a device's
memory cap kills makes the device infeasible (reported, not raised).
"""

from __future__ import annotations

import bisect
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testbed.planner.cluster import DeviceProfile, Links, PowerFit, Workload
from testbed.planner.power_fit import fit_power
from testbed.spec.experiment import Spec
from testbed.spec.planner import ProfileCfg

Report = Callable[[str], None]


@dataclass
class Profiling:
    """What profiling measured, and what it cost."""

    profiles: dict[str, DeviceProfile]
    links: Links
    pull_bytes: int
    push_bytes: int
    seconds: float
    runs: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def workload(self, steps: int) -> Workload:
        return Workload(steps, self.pull_bytes, self.push_bytes)


def device_spec(spec: Spec, device: str, windows: ProfileCfg) -> Spec:
    """A one-device dp-async run of the spec's model on `device`, for the profile windows."""
    assert spec.cluster is not None
    cluster = spec.cluster.model_copy(update={
        "devices": [d for d in spec.cluster.devices if d.name == device],
        "links": [], "schedule": []})  # fmt: skip
    training = spec.training.model_copy(update={
        "iterations": windows.total, "log_every": record_every(windows),
        "eval_every": windows.total,
        "eval_samples": min(spec.training.eval_samples or 100, 100)})  # fmt: skip
    job = spec.job.model_copy(update={"mode": "dp-async", "replicas": 1})
    return spec.model_copy(update={
        "name": f"profile-{device}", "cluster": cluster, "training": training, "job": job,
        "placement": None, "planner": None})  # fmt: skip


def record_every(windows: ProfileCfg) -> int:
    """The server's step-record interval: the largest that still records every window's ends
    (a record per step costs a fast device ~6% of its step time: tf-cifar10 on the desktop,
    0.251 / 0.242 s per step against 0.236 / 0.221 s at every 5th)."""
    return math.gcd(windows.warmup_steps, windows.time_steps, windows.power_steps)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _event_t(events: Sequence[dict[str, Any]], kind: str) -> float:
    return float(next(e["t"] for e in events if e["event"] == kind))


def _interpolate(ts: Sequence[float], values: Sequence[float], t: float) -> float:
    """Linear interpolation of a cumulative counter sampled at ts (clamped at the ends)."""
    i = bisect.bisect_left(ts, t)
    if i <= 0:
        return values[0]
    if i >= len(ts):
        return values[-1]
    t0, t1 = ts[i - 1], ts[i]
    return values[i - 1] + (values[i] - values[i - 1]) * (t - t0) / (t1 - t0)


def read_profile(run: Path, device: str, windows: ProfileCfg) -> DeviceProfile:
    """A device's profile from its one-device run directory (summary, events, metrics)."""
    summary = json.loads((run / "summary.json").read_text())
    if summary.get("status") != "completed":
        return _failed(summary, device)
    events, metrics = read_jsonl(run / "events.jsonl"), read_jsonl(run / "metrics.jsonl")
    steps = {int(m["step"]): float(m["t"]) for m in metrics
             if m["kind"] == "worker" and m.get("worker") == "ps"}  # fmt: skip
    w, t_end = windows.warmup_steps, windows.warmup_steps + windows.time_steps
    step_s = (steps[t_end] - steps[w]) / windows.time_steps
    power = [m for m in metrics if m["kind"] == "power" and m.get("device") == device]
    ts, cpu = [p["t"] for p in power], [p["cpu_s"] for p in power]
    last = max(steps)
    device_cpu = (_interpolate(ts, cpu, steps[last]) - _interpolate(ts, cpu, steps[w])) / (last - w)
    replica = summary["workers"]["replica0"]
    worker_cpu = float(replica["steady"]["process_cpu_per_step_s"])
    started = _event_t(events, "training_started")
    startup_cpu = {("ps" if m["worker"] == "ps" else "worker"): float(m["cpu_s"])
                   for m in metrics if m["kind"] == "startup"}  # fmt: skip
    fit, _ = fit_power([p for p in power if "power_w" in p])
    resources = (summary.get("cluster") or {}).get("resource_events", {}).get(device) or {}
    return DeviceProfile(
        name=device,
        quota_cpus=float(summary["power"]["devices"][device]["quota_cpus"]),
        step_s=step_s,
        worker_cpu_s=worker_cpu,
        ps_cpu_s=max(0.0, device_cpu - worker_cpu),
        startup_s=started - _event_t(events, "workers_started"),
        startup_cpu_s=startup_cpu,
        power=fit,
        first_step_s=max(0.0, steps[w] - started - w * step_s),
        trace_s=_trace_s(replica),
        peak_memory_bytes=int(resources.get("peak_bytes", 0)),
    )


def _trace_s(replica: dict[str, Any]) -> float:
    """The worker's compute seconds over what its steps would cost at the steady pace (tf.function
    tracing and the first calls)."""
    compute = float(replica["totals"]["compute_s"])
    per_step = float(replica["steady"]["compute_per_step_s"])
    return max(0.0, compute - int(replica["step"]) * per_step)


def _failed(summary: dict[str, Any], device: str) -> DeviceProfile:
    """An infeasible device (its memory cap killed the run); any other failure is raised."""
    events = (summary.get("cluster") or {}).get("resource_events") or {}
    reason = str(summary.get("reason", ""))
    if "OOM" not in reason and not (events.get(device) or {}).get("oom_kills"):
        raise RuntimeError(f"profiling {device!r} failed: {reason or summary.get('status')}")
    nan = float("nan")
    return DeviceProfile(device, 1.0, nan, nan, nan, nan, {}, PowerFit(0.0, 0.0),
                         feasible=False, reason=f"cannot hold the model: {reason.splitlines()[-1]}")


def wire_bytes(run: Path) -> tuple[int, int]:
    """(pull, push) message bytes per step of the profiled replica (its last pull, with no
    step left, carries no weights and is counted in the pulls of its steps)."""
    replica = json.loads((run / "summary.json").read_text())["workers"]["replica0"]
    pulled, pushed, steps = replica["peers"]["received:ps"], replica["peers"]["sent:ps"], replica["step"]
    return round(pulled["message_bytes"] / steps), round(pushed["message_bytes"] / steps)


def probe_links(spec: Spec, report: Report) -> tuple[Links, list[str]]:
    """Every shaped access link's goodput (bulk TCP probe) and half the RTT as latency."""
    from testbed.controller.cluster_run import run_cluster
    from testbed.emulation.fidelity import DEGRADED_NO_ROOT
    from testbed.emulation.probe import probe_all, probe_rtt

    assert spec.cluster is not None
    configured = {link.device: link.rate_bps for link in spec.cluster.links if link.device}
    names = [d.name for d in spec.cluster.devices]
    if not spec.cluster.links or len(names) < 2:
        return Links(dict.fromkeys(names)), ["no shaped links: transfers cost no time"]
    with run_cluster(spec, f"plan-probe-{int(time.time())}", lambda *a, **k: None) as cluster:
        assert cluster is not None
        if cluster.handle.fidelity_level == DEGRADED_NO_ROOT:
            return Links(configured), ["no root: link rates as configured (not probed)"]
        results = probe_all(cluster.handle, seconds=1.0)
        rtt = probe_rtt(cluster.handle, names[0], names[1])
    measured: dict[str, float | None] = dict.fromkeys(names)
    for r in results:
        if r.src in configured and configured[r.src] == r.configured_bps:
            measured[r.src] = r.goodput_bps
    report(f"links probed: {', '.join(f'{d} {v / 1e6:.1f} Mbit/s' for d, v in measured.items() if v)}")
    return Links(measured, latency_s=rtt / 2), []


def profile_cluster(spec: Spec, windows: ProfileCfg, root: Path, report: Report) -> Profiling:
    """Profile every candidate device (one short run each, in turn) and probe the links."""
    from testbed.controller.experiment import run_experiment
    from testbed.controller.workers import WorkerFailedError

    assert spec.cluster is not None and spec.planner is not None
    candidates = spec.planner.candidates or [d.name for d in spec.cluster.devices]
    started = time.monotonic()
    links, notes = probe_links(spec, report)
    profiles, runs, sizes = {}, {}, (0, 0)
    for device in candidates:
        report(f"profiling {device}: {windows.total} steps alone")
        try:
            run = run_experiment(device_spec(spec, device, windows), root, progress=False)
            path = run.path
        except WorkerFailedError:
            path = sorted((root / f"profile-{device}").iterdir())[-1]  # the failed run's dir
        profiles[device] = read_profile(path, device, windows)
        runs[device] = str(path.relative_to(root))
        if profiles[device].feasible and sizes == (0, 0):
            sizes = wire_bytes(path)
    return Profiling(profiles, links, *sizes, seconds=time.monotonic() - started, runs=runs,
                     notes=notes)  # fmt: skip
