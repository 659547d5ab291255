"""Which workers a distributed run needs: pure function of the spec (stages, placement, mode)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from testbed.emulation.config import DeviceSpec
from testbed.emulation.profiles import get_profile
from testbed.models import get_model, resolve_split
from testbed.modes import MODES, get_mode
from testbed.spec.experiment import Spec
from testbed.spec.kt import section_count


class PlanError(ValueError):
    """The spec's placement cannot be realised; the message names the value and expected form."""


@dataclass(frozen=True)
class WorkerPlan:
    """One worker process: its name, role and the contiguous stages it holds."""

    name: str
    role: str  # "stage", "ps", "replica" or "teacher"
    stage_ids: tuple[int, ...] = ()
    replica_index: int = 0


def stage_count(spec: Spec) -> int:
    """Stages of the split model (the student's sections for a KT spec)."""
    if spec.algorithm.name == "kt":
        return section_count(spec)
    return len(resolve_split(get_model(spec.model.name), spec.model.split_after))


def stage_groups(placement: dict[str, str] | None, n: int) -> list[tuple[str, tuple[int, ...]]]:
    """(device, stages) in stage order; one device per stage when placement is None."""
    if placement is None:
        return [(f"stage{i}", (i,)) for i in range(n)]
    expected = [str(i) for i in range(n)]
    if sorted(placement, key=lambda k: (len(k), k)) != expected:
        raise PlanError(
            f"placement: got stage keys {sorted(placement)}; expected exactly {expected} "
            f"(one entry per stage of the {n}-stage split)"
        )
    groups: list[tuple[str, list[int]]] = []
    for i in range(n):
        device = placement[str(i)]
        if groups and groups[-1][0] == device:
            groups[-1][1].append(i)
        elif any(d == device for d, _ in groups):
            earlier = next(s for d, s in groups if d == device)
            raise PlanError(
                f"placement: device {device!r} gets stages that are not contiguous "
                f"({[*earlier, i]}); expected consecutive stages"
            )
        else:
            groups.append((device, [i]))
    return [(d, tuple(s)) for d, s in groups]


def plan_workers(spec: Spec) -> list[WorkerPlan]:
    """The parameter server plus the workers spec.job.mode's layout asks for."""
    mode, n = get_mode(spec.job.mode), stage_count(spec)
    if not mode.distributed:
        known = ", ".join(m for m in MODES if get_mode(m).distributed)
        raise PlanError(f"job.mode: got {mode.name!r}; expected a distributed mode: {known}")
    workers = _LAYOUTS[mode.layout](spec, n)
    if mode.one_stage_per_worker:
        for w in workers:
            if len(w.stage_ids) != 1:
                raise PlanError(
                    f"job.mode {mode.name!r}: device {w.name!r} gets stages {list(w.stage_ids)};"
                    " expected one stage per device (each split needs its own module)"
                )
    names = [w.name for w in workers]
    if "ps" in names or names.count("teacher") > (mode.layout == "sections"):
        raise PlanError("placement: device names 'ps' and 'teacher' are reserved for the parameter "
                        "server and the KT teacher; rename the device")
    return [WorkerPlan("ps", "ps"), *workers]


def _pipeline(spec: Spec, n: int) -> list[WorkerPlan]:
    workers = [WorkerPlan(d, "stage", ids) for d, ids in stage_groups(stage_placement(spec), n)]
    if len(workers) < 2:
        raise PlanError(
            f"job.mode {spec.job.mode!r}: placement puts all {n} stages on one device; "
            "expected at least two devices (use bp-local for one)"
        )
    return workers


def _local(spec: Spec, n: int) -> list[WorkerPlan]:
    return [WorkerPlan("local", "stage", tuple(range(n)))]


def _replicas(spec: Spec, n: int) -> list[WorkerPlan]:
    everything = tuple(range(n))
    return [WorkerPlan(f"replica{r}", "replica", everything, r) for r in range(spec.job.replicas)]


def _sections(spec: Spec, n: int) -> list[WorkerPlan]:
    """The teacher, then the student sections (one device may hold them all: the baseline)."""
    sections = stage_groups(stage_placement(spec), n)
    return [WorkerPlan("teacher", "teacher"), *(WorkerPlan(d, "stage", ids) for d, ids in sections)]


_LAYOUTS = {"pipeline": _pipeline, "local": _local, "replicas": _replicas, "sections": _sections}


def stage_placement(spec: Spec) -> dict[str, str] | None:
    """Stage index -> device: the spec's stage keys, else the stages in contiguous blocks over
    the cluster's devices in order (stage i on device i when the counts match)."""
    given = {k: v for k, v in (spec.placement or {}).items() if k.isdigit()}
    if given or spec.cluster is None:
        return given or None
    devices, n = [d.name for d in spec.cluster.devices], stage_count(spec)
    return {str(i): devices[i * len(devices) // n] for i in range(n)}


def device_of(spec: Spec, plan: WorkerPlan) -> str | None:
    """The cluster device a worker runs on; None means the controller's host (e.g. the PS).

    Stage workers are named after their device; 'ps', 'teacher', 'local' and 'replica<k>' take
    an explicit placement entry, else (stage trainers only) the device of their first stage.
    Without one, dp-async's parameter server runs on the fastest device (the seed's rule).
    """
    if spec.cluster is None:
        return None
    names = [d.name for d in spec.cluster.devices]
    explicit = (spec.placement or {}).get(plan.name)
    if explicit is None and plan.role == "ps" and get_mode(spec.job.mode).layout == "replicas":
        return fastest_device(spec.cluster.devices)
    if explicit is not None or plan.role in ("ps", "teacher"):
        return explicit
    if plan.role == "stage" and plan.name in names:
        return plan.name
    if plan.role == "replica":
        return names[plan.replica_index % len(names)]
    return (stage_placement(spec) or {}).get(str(plan.stage_ids[0]), names[0])


def fastest_device(devices: Sequence[DeviceSpec]) -> str:
    """The device with the largest CPU cap (uncapped counts as largest; the first on a tie).

    Device classes' caps are their speed times the same reference, so this is the fastest class.
    """
    def cpus(device: DeviceSpec) -> float:
        cap = device.cpus if device.cpus is not None else get_profile(device.profile).cpus
        return math.inf if cap is None else cap

    return max(devices, key=cpus).name


def peer_map(workers: list[WorkerPlan], addresses: dict[str, str]) -> dict[str, dict[str, str]]:
    """Each trainer's peers (role -> address): its neighbours in stage order and the PS.

    With a KT teacher, the student section workers have no neighbours; the teacher gets
    'stage<i>@<worker>' -> the address of the worker holding student section i.
    """
    if any(w.role == "teacher" for w in workers):
        return _teacher_peers(workers, addresses)
    trainers = [w for w in workers if w.role != "ps"]
    out = {}
    for k, w in enumerate(trainers):
        peers = {"ps": addresses["ps"]}
        if w.role == "stage" and k > 0:
            peers["upstream"] = addresses[trainers[k - 1].name]
        if w.role == "stage" and k < len(trainers) - 1:
            peers["downstream"] = addresses[trainers[k + 1].name]
        out[w.name] = peers
    return out


def _teacher_peers(
    workers: list[WorkerPlan], addresses: dict[str, str]
) -> dict[str, dict[str, str]]:
    ps = {"ps": addresses["ps"]}
    out = {w.name: dict(ps) for w in workers if w.role == "stage"}
    out["teacher"] = {**ps, **{f"stage{i}@{w.name}": addresses[w.name]
                               for w in workers if w.role == "stage" for i in w.stage_ids}}
    return out
