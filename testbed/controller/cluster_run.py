"""A run's emulated cluster: brought up by its backend, probed, hosting workers, reported.

The runtime never sees any of this: the controller hands each worker a bind address
(its device's) and a launcher (the handle's `spawn`), and reads link rates for metrics.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any

from testbed.controller.backends import BACKENDS
from testbed.controller.link_schedule import LinkSchedule
from testbed.controller.link_traffic import HOST, bound_it_s, link_traffic
from testbed.controller.plan import WorkerPlan
from testbed.emulation.fidelity import DEGRADED_NO_ROOT, FidelityWarning
from testbed.emulation.handle import ClusterHandle
from testbed.emulation.meter import KIND as POWER_KIND
from testbed.emulation.meter import PowerMeter
from testbed.emulation.rapl import Rapl
from testbed.metrics.sink import Point
from testbed.spec.experiment import Spec

Report = Callable[..., None]


class RunCluster:
    """The controller's view of a cluster handle (local or docker) during one run."""

    def __init__(self, spec: Spec, handle: ClusterHandle, report: Report) -> None:
        self.spec, self.handle, self.report = spec, handle, report
        self.probe_skipped: str | None = None

    def bind_host(self, device: str | None) -> str:
        """Where a worker binds: its device's address; the host side of the cluster otherwise."""
        if device is not None:
            return str(self.handle.address(device))
        return self.handle.host_address or self.spec.job.host

    def launcher(self, device: str | None) -> Callable[..., Any] | None:
        """A Popen-like callable starting argv inside the device (None: a plain host process)."""
        if device is None:
            return None
        handle = self.handle

        def launch(argv: list[str], env: dict[str, str] | None = None, **popen: Any) -> Any:
            return handle.spawn(device, list(argv), env, **popen)

        return launch

    def probe(self, seconds: float = 1.0) -> None:
        """Measure every shaped link (bulk TCP) before training; record and warn when off > 5%."""
        from testbed.emulation.probe import probe_all

        if self.handle.fidelity_level == DEGRADED_NO_ROOT:
            self.probe_skipped = "links are not shaped by the kernel without root"
            self.report("fidelity_probe_skipped", reason=self.probe_skipped)
            return
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", FidelityWarning)
            results = probe_all(self.handle, seconds=seconds)
        for w in caught:
            print(f"warning: {w.message}", flush=True)
        self.report("fidelity_probe", probes=[r.to_dict() for r in results])

    def power_meter(self, write: Callable[[Point], None], tags: dict[str, str]) -> PowerMeter:
        """The emulated power meter over every device whose counters can be read; its points
        (kind 'power', tags device and meter=model) go to `write`."""
        rapl = Rapl.find()

        def emit(device: str, fields: dict[str, float]) -> None:
            write(Point.now(POWER_KIND, fields, {**tags, "device": device, "meter": "model"}))

        targets = self.handle.meter_targets(rapl=rapl is not None)
        skipped = sorted(set(self.handle.devices) - set(targets))
        if skipped:
            self.report("power_meter_skipped", devices=skipped,
                        reason="the device's counters are not readable from this host")  # fmt: skip
        return PowerMeter(targets, emit, rapl=rapl)

    def leave_observer_unshaped(self) -> None:
        """The parameter server on the host only observes: the weights pushed for evaluation
        bypass the devices' links (they would compete with the training's own traffic)."""
        host = self.handle.host_address
        if host is None or self.handle.fidelity_level == DEGRADED_NO_ROOT:
            return  # the fallback leaves it unpaced in the workers (runtime.stage_io.ps_shaped)
        self.handle.leave_unshaped([host])
        self.report("observer_unshaped", address=host)

    def rate_of(self, src: str, dst: str) -> int | None:
        """Configured rate (bit/s) of the path src -> dst; HOST is reached through the hub."""
        if src == HOST and dst == HOST:
            return None
        if HOST in (src, dst):
            if dst == HOST and self.handle.host_address in self.handle.unshaped:
                return None  # the observer's traffic bypasses the link
            rate = self.handle.configured_rate_bps(dst if src == HOST else src)
            return None if rate is None else int(rate)
        rate = self.handle.path_rate_bps(src, dst)
        return None if rate is None else int(rate)

    def resource_events(self) -> dict[str, dict[str, int] | None]:
        """Per device: OOM kills, memory-limit hits, peak memory (None where nothing enforces)."""
        out: dict[str, dict[str, int] | None] = {}
        for name in self.handle.devices:
            try:
                events = self.handle.resource_events(name)
            except (OSError, KeyError) as err:  # cgroup already gone or unreadable
                self.report("resource_events_unreadable", device=name, error=str(err))
                events = None
            out[name] = None if events is None else asdict(events)
        return out

    def oom_note(self, events: dict[str, dict[str, int] | None]) -> str:
        """'device a: 1 OOM kill(s) (memory 1g)' for each device that had one, or ''."""
        notes = []
        for name, ev in events.items():
            if ev and ev.get("oom_kills"):
                memory = self.handle.devices[name].memory_bytes
                notes.append(f"device {name!r}: {ev['oom_kills']} OOM kill(s) (limit {memory} B)")
        return "; ".join(notes)

    def summary(self, events: dict[str, dict[str, int] | None]) -> dict[str, Any]:
        fidelity = self.handle.fidelity.to_dict()
        if self.probe_skipped:
            fidelity["probe_skipped"] = self.probe_skipped
        return {
            "backend": self.spec.cluster.backend if self.spec.cluster else None,
            "fidelity_level": self.handle.fidelity_level,
            "fidelity": fidelity,
            "devices": {n: _device(d) for n, d in self.handle.devices.items()},
            "links": {"-".join(k): s.settings() for k, s in self.handle.links.items()},
            "resource_events": events,
        }


def _device(device: Any) -> dict[str, Any]:
    fields = ("profile", "cpus", "memory_bytes", "arch", "gpus", "threads")
    out = {f: getattr(device, f, None) for f in fields}
    power = getattr(device, "power", None)
    out["power"] = power.as_dict() if power is not None else None
    return out


@contextmanager
def run_cluster(spec: Spec, run_id: str, report: Report) -> Iterator[RunCluster | None]:
    """Bring up spec.cluster (None: no cluster); the backend always tears it down on exit."""
    if spec.cluster is None:
        yield None
        return
    backend = BACKENDS.get(spec.cluster.backend)(run_id)
    with backend.up(spec.cluster, host_link=True) as handle:
        report("cluster_up", backend=spec.cluster.backend, fidelity_level=handle.fidelity_level,
               addresses={n: handle.address(n) for n in handle.devices})  # fmt: skip
        try:
            yield RunCluster(spec, handle, report)
        finally:
            report("cluster_teardown")


def link_schedule(
    spec: Spec, cluster: RunCluster | None, report: Report, on_worker: Any = None
) -> LinkSchedule:
    """The spec's schedule of link changes and faults on this cluster (empty without one),
    clocked from training; `on_worker(entry)` injects the faults aimed at a worker."""
    if cluster is None or spec.cluster is None:
        return LinkSchedule([], lambda entry: None, report)
    return LinkSchedule(list(spec.cluster.schedule), cluster.handle.apply, report, on_worker)


def explain_failure(reason: str, cluster: RunCluster | None, report: Report) -> str:
    """A worker failure's reason plus the devices' OOM kills, read before the cluster goes."""
    if cluster is None:
        return reason
    events = cluster.resource_events()
    report("resource_events", devices=events)
    note = cluster.oom_note(events)
    return f"{reason}\n{note}" if note else reason


def cluster_summary(
    spec: Spec,
    plans: list[WorkerPlan],
    devices: dict[str, str | None],
    workers: dict[str, Any],
    cluster: RunCluster,
    schedule: LinkSchedule,
) -> dict[str, Any]:
    """Summary fields of an emulated run: fidelity, resources, schedule, bytes per link."""
    events = cluster.resource_events()
    body = cluster.summary(events)
    body["schedule_applied"] = schedule.applied
    note = cluster.oom_note(events)
    if note:
        body["resource_note"] = note
    trainers = [(p.name, devices[p.name] or HOST) for p in plans if p.role != "ps"]
    ps = next((p.name, devices[p.name] or HOST) for p in plans if p.role == "ps")
    links = link_traffic(trainers, ps, workers, spec.training.iterations, cluster.rate_of)
    return {
        "cluster": body,
        "fidelity_level": body["fidelity_level"],
        "links": links,
        "link_bound_it_s": bound_it_s(links),
    }
