"""The docker backend: one capped, long-lived container per device on a labelled network.

`DockerBackend(run_id).up(cluster)` realises a ClusterSpec with the Docker SDK:

- a bridge network ``tb-<h6>-<run>`` and per device a container
  ``tb-<h6>-<run>-<dev>`` from the project's worker image for its arch
  (`docker_images`; arm64 runs under QEMU on an x86 engine), idling in
  ``sleep infinity`` under docker-init, with the device's caps as ``docker
  run`` spells them (``--cpus``, ``--memory``), NET_ADMIN, GPU device requests
  for ``gpus`` (refused, or dropped with ``on_missing_gpu: fallback``, where
  the engine has no NVIDIA runtime), and bind mounts at the same paths inside
  (the data cache and whatever the caller passes: run and config directories);
- links shaped inside each container by `docker_tc` (egress on eth0, the
  download on an ifb), from the same plans as the local backend;
- processes: `spawn` returns a real `subprocess.Popen` of the host relay
  `docker_exec`, which runs the command in the device's container (so inside
  its caps and network) and mirrors its output, exit status and signals. One
  container per device, not per process: processes of a device share its
  caps as they would on a board, and the link plan survives process restarts.

With ``cluster.stack`` the devices are instead a standing stack's running containers
(`docker_stack`): adopted, shaped, and left running.

Everything carries the label ``testbed.run=<run id>``; `down()` (also on
failure inside `up()`) removes the containers and the network, then sweeps
with `docker_cleanup.clean(run_id)`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from testbed.emulation import lease
from testbed.emulation.agents import agent_argv
from testbed.emulation.agents.docker_tc import plans_to_json
from testbed.emulation.cgroups import CgroupEvents
from testbed.emulation.config import ClusterSpec, LinkSettings
from testbed.emulation.docker import cleanup as docker_cleanup
from testbed.emulation.docker import stack as docker_stack
from testbed.emulation.docker.devices import (
    clamp_cpus,
    container_argv,
    container_env,
    container_options,
    data_dir,
    exec_user,
    hidden_paths,
    labels,
    results_root,
    volumes,
)
from testbed.emulation.docker.images import CONTAINER_PYTHON, check_image, engine_arch, image_for
from testbed.emulation.fidelity import FULL, Fidelity
from testbed.emulation.handle import ClusterHandle
from testbed.emulation.naming import RunNames, check_run_id
from testbed.emulation.netem import check_settings, require_netem
from testbed.emulation.profiles import ResolvedDevice, gpu_count
from testbed.emulation.resolve import resolve_devices
from testbed.emulation.shaping import EgressPlan, device_egress, hub_egress
from testbed.emulation.usage import CounterReader, pid_reader

RELAY = agent_argv("docker_exec")
ENGINE_TIMEOUT_S = 120
TC_MODULE = [CONTAINER_PYTHON, "-m", "testbed.emulation.agents.docker_tc"]


class DockerUnavailable(RuntimeError):
    """No Docker SDK, or no engine answers."""


def connect(timeout_s: int = ENGINE_TIMEOUT_S) -> Any:
    """A client for $DOCKER_HOST (default: the local socket) that has answered a ping."""
    try:
        import docker
    except ImportError:
        raise DockerUnavailable("the Docker SDK is missing; expected docker==7.2.0") from None
    where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    try:
        client = docker.from_env(timeout=timeout_s)
        client.ping()
    except Exception as error:  # noqa: BLE001 - the SDK raises several kinds here
        raise DockerUnavailable(
            f"no Docker engine answers at {where}: {error}; start one "
            "(bash .ci/docker.sh engine) or point DOCKER_HOST at one"
        ) from None
    return client


def engine_gpus(client: Any) -> int:
    """GPUs the engine can hand to containers: the host's, if an NVIDIA runtime is set up."""
    runtimes = client.info().get("Runtimes") or {}
    if "nvidia" not in runtimes and not shutil.which("nvidia-container-cli"):
        return 0
    return gpu_count()


def docker_notes(devices: Mapping[str, ResolvedDevice], engine: str) -> list[str]:
    """Resolution notes (GPU fallbacks), and devices emulated under QEMU."""
    notes = [note for device in devices.values() for note in device.notes]
    notes += [
        f"device {d.name!r}: {d.arch} image runs under QEMU user emulation on this {engine} "
        "engine (roughly 10x slower than native)"
        for d in devices.values()
        if d.arch != engine
    ]
    return notes


class DockerBackend:
    """Realises a ClusterSpec as containers of a Docker engine (see the module docstring)."""

    name = "docker"

    def __init__(
        self,
        run_id: str,
        *,
        mounts: Sequence[str | Path] = (),
        images: Mapping[str, str] | None = None,
        mount_source: bool | None = None,
        client: Any | None = None,
    ) -> None:
        """`mounts`: host directories bound at the same path (run dir, configs); the data
        cache and the results root ($TESTBED_RESULTS, else the repository's results/) are
        always added. `images`: arch -> tag overrides. `mount_source`: bind the host's testbed
        package over the image's copy (develop without rebuilding); None: as
        $TESTBED_DOCKER_MOUNT_SOURCE says ("1": yes)."""
        self.run_id = check_run_id(run_id)
        self.mounts = list(dict.fromkeys(map(str, [*mounts, data_dir(), results_root()])))
        self.images = dict(images or {})
        if mount_source is None:
            mount_source = os.environ.get("TESTBED_DOCKER_MOUNT_SOURCE") == "1"
        self.mount_source = mount_source
        self.client = client

    @contextmanager
    def up(self, cluster: ClusterSpec, *, host_link: bool = False) -> Iterator[DockerCluster]:
        """Build the cluster, yield its handle, and always take it down afterwards.

        `host_link` is accepted for symmetry with the local backend: on a local
        engine the host always reaches `address(dev)` and devices reach the host
        at `handle.host_address` (the network's gateway).
        """
        handle = self.start(cluster)
        try:
            yield handle
        finally:
            handle.down()

    def start(self, cluster: ClusterSpec) -> DockerCluster:
        """Build the cluster; on any failure, remove what was made and re-raise."""
        if cluster.backend != self.name:
            raise ValueError(f"cluster asks for backend {cluster.backend!r}; this is 'docker'")
        client = self.client or connect()
        devices = resolve_devices(cluster.devices, engine_gpus(client))
        devices = clamp_cpus(devices, int(client.info().get("NCPU") or 1))
        for path in self.mounts:
            Path(path).mkdir(parents=True, exist_ok=True)
        if cluster.stack is None:  # a standing stack's containers outlive every run
            lease.take(self.run_id)
        handle = DockerCluster(
            self.run_id, cluster, devices, Fidelity(FULL), client=client,
            mounts=volumes(self.mounts, self.mount_source), images=self.images,
        )  # fmt: skip
        try:
            handle.build()
        except BaseException:
            handle.down()
            raise
        return handle


class DockerCluster(ClusterHandle):
    """A cluster of device containers; made by `DockerBackend.start`."""

    def __init__(
        self,
        run_id: str,
        cluster: ClusterSpec,
        devices: dict[str, ResolvedDevice],
        fidelity: Fidelity,
        *,
        client: Any,
        mounts: Mapping[str, dict[str, str]],
        images: Mapping[str, str],
    ) -> None:
        super().__init__(run_id, cluster, devices, fidelity)
        self.client = client
        self.engine_arch = engine_arch(client)
        self.fidelity.notes[:] = docker_notes(devices, self.engine_arch)  # replaces local notes
        self.names = RunNames(run_id)
        self.mounts = dict(mounts)
        self.images = {name: image_for(d.arch, images, d.gpus > 0) for name, d in devices.items()}
        self.containers: dict[str, Any] = {}
        self.addresses: dict[str, str] = {}
        self.network: Any | None = None
        self.network_name = self.names.hub_netns
        self.adopted = cluster.stack is not None  # a standing stack's containers: never removed
        self.removed: tuple[list[str], list[str]] | None = None
        self._plans: dict[str, tuple[EgressPlan | None, EgressPlan | None]] = {}

    # -- building --------------------------------------------------------------------------
    def build(self) -> None:
        if self.adopted:
            self._adopt()
        else:
            self._create()
        for name, container in self.containers.items():
            self.addresses[name] = self._address_of(name, container)
        self.fidelity.netem = self._detect_netem()
        require_netem(self.cluster, self.fidelity.netem)
        self._reshape(set(self.devices), dict(self.links))

    def _adopt(self) -> None:
        """Use the stack's running device containers (`docker_stack`), caps checked."""
        assert self.cluster.stack is not None
        adopted = docker_stack.adopt(self.client, self.cluster.stack, self.devices)
        self.containers, self.network_name = adopted.containers, adopted.network
        self.mounts = adopted.mounts
        for name in self.containers:  # a crashed earlier run may have left its shaping
            self._unshape(name, (None, None))
        self.fidelity.notes.append(
            f"devices are the running containers of stack {self.cluster.stack!r} (caps checked "
            "against the spec; image and mounts are the stack's)"
        )

    def _create(self) -> None:
        existing = docker_cleanup.find(self.run_id, self.client)
        if any(existing):
            raise RuntimeError(
                f"run {self.run_id!r} already has containers/networks {existing}; it is up "
                f"elsewhere, or crashed: remove them with testbed.emulation.cleanup.clean"
                f"({self.run_id!r})"
            )
        for name, tag in self.images.items():
            check_image(self.client, tag, self.devices[name].arch)
        self.network = self.client.networks.create(
            self.names.hub_netns, driver="bridge", labels=labels(self.run_id, "network")
        )
        for name, device in self.devices.items():
            self.containers[name] = self._run(device)

    def _run(self, device: ResolvedDevice) -> Any:
        import docker.errors

        options = container_options(
            device, run_id=self.run_id, name=self.names.device_netns(device.name),
            image=self.images[device.name], network=self.names.hub_netns,
            mounts=self.mounts, gpu_ids=self.gpu_indices.get(device.name, []),
        )  # fmt: skip
        try:
            return self.client.containers.run(**options)
        except docker.errors.APIError as error:
            hint = ""
            if device.arch != self.engine_arch and "exec format" in str(error):
                hint = f"; register QEMU for {device.arch} (binfmt, see .ci/docker.sh)"
            raise RuntimeError(
                f"device {device.name!r}: container from {options['image']!r} did not "
                f"start: {error}{hint}"
            ) from None

    def _address_of(self, name: str, container: Any) -> str:
        container.reload()
        if container.status != "running":
            logs = container.logs(tail=20).decode(errors="replace")
            raise RuntimeError(f"device {name!r}: container is {container.status}: {logs}")
        net = container.attrs["NetworkSettings"]["Networks"][self.network_name]
        self.host_address = net.get("Gateway") or self.host_address
        return str(net["IPAddress"])

    def _detect_netem(self) -> bool:
        """Ask one container (native arch preferred: faster) whether the kernel has netem."""
        native = [n for n, d in self.devices.items() if d.arch == self.engine_arch]
        device = (native or list(self.devices))[0]
        return bool(self.exec_json(device, [*TC_MODULE, "netem"])["netem"])

    # -- ClusterHandle ---------------------------------------------------------------------
    def address(self, device: str) -> str:
        self.device(device)
        return self.addresses[device]

    def container(self, device: str) -> Any:
        return self.containers[self.device(device).name]

    def device_env(self, device: ResolvedDevice) -> dict[str, str]:
        env = super().device_env(device)
        env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, range(device.gpus)))  # renumbered inside
        env["TESTBED_DATA"] = str(data_dir())
        env["TESTBED_BACKEND"] = "docker"
        return env

    def spawn(
        self, device: str, argv: list[str], env: dict[str, str] | None = None, **popen: Any
    ) -> subprocess.Popen[Any]:
        """Start argv in the device's container; returns the host relay's Popen.

        The host's interpreter and package paths in argv are mapped to the
        image's (`docker_devices.container_argv`). The environment inside is `env` less the
        host-only variables (PATH, HOME, VIRTUAL_ENV, ...: `container_env`), then the device's
        variables -- never this process's own environment. `cwd`
        becomes the working directory inside; other Popen arguments apply to the
        relay (pipes, text, start_new_session). The program's stdin is /dev/null.
        """
        self._require_up()
        resolved = self.device(device)
        if not argv:
            raise ValueError(f"spawn on {device!r} got an empty argv; expected [program, args...]")
        command = [*RELAY, "--container", self.container(device).id,
                   "--user", exec_user()]  # fmt: skip
        cwd = popen.pop("cwd", None)
        if cwd is not None:
            command += ["--workdir", str(cwd)]
        for key, value in {**container_env(env or {}), **self.device_env(resolved)}.items():
            command += ["--env", f"{key}={value}"]
        inside = container_argv(list(argv))
        hidden = hidden_paths([*inside, *([str(cwd)] if cwd is not None else [])], self.mounts)
        if hidden:
            raise ValueError(
                f"spawn on {device!r}: {hidden} exist on the host but are not mounted in the "
                f"container (mounted: {sorted(self.mounts)}); pass them in DockerBackend(mounts=...)"
            )
        command += ["--", *inside]
        proc: subprocess.Popen[Any] = subprocess.Popen(command, **popen)
        self._procs.append(proc)
        return proc

    def device_pids(self, device: str) -> list[int]:
        """Host pids of the device container's processes, except its init and idle `sleep`
        (killing those would stop the container: the device, not its processes)."""
        container = self.container(device)
        container.reload()
        init = int(container.attrs["State"]["Pid"])
        top = container.top()
        pid_col, cmd_col = top["Titles"].index("PID"), top["Titles"].index("CMD")
        return [int(row[pid_col]) for row in top["Processes"] or []
                if int(row[pid_col]) != init and not row[cmd_col].startswith("sleep")]

    def _set_link_up(self, device: str, up: bool) -> None:
        """The host's end of the container's eth0 veth down (or up): as the local backend's hub
        port, the device loses carrier and keeps its address (needs root on the engine's host)."""
        from pyroute2 import IPRoute

        out = self.container(device).exec_run(["cat", "/sys/class/net/eth0/iflink"]).output
        with IPRoute() as ipr:
            ipr.link("set", index=int(out.decode().strip()), state="up" if up else "down")

    def exec_json(self, device: str, argv: list[str], user: str = "root") -> dict[str, Any]:
        """Run a helper in the device's container and parse the JSON line it prints."""
        result = self.container(device).exec_run(argv, user=user, demux=True)
        out, err = (part.decode(errors="replace") if part else "" for part in result.output)
        if result.exit_code != 0:
            raise RuntimeError(
                f"{' '.join(argv[:4])} in device {device!r} exited {result.exit_code}: "
                f"{err.strip() or out.strip()}"
            )
        return dict(json.loads(out.strip().splitlines()[-1]))

    def _apply_cpus(self, device: str, cpus: float) -> None:
        """docker update --cpus: the container's CFS quota over a 100 ms period."""
        self.containers[device].update(cpu_period=100_000, cpu_quota=int(cpus * 100_000))

    def _apply_link(self, key: tuple[str, ...], settings: LinkSettings) -> None:
        check_settings(key, settings, bool(self.fidelity.netem))
        self._reshape(set(key), {**self.links, key: settings})

    def _reshape_all(self) -> None:
        self._reshape(set(self.devices), dict(self.links))

    def _reshape(self, devices: set[str], links: dict[tuple[str, ...], LinkSettings]) -> None:
        """Re-plan each named device's eth0 egress and ifb download; apply what changed."""
        for name in sorted(devices):
            plans = (device_egress(links, name, self.addresses, self.unshaped), hub_egress(links, name))
            previous = self._plans.get(name, (None, None))
            if plans == previous:
                continue
            self.exec_json(name, [*TC_MODULE, "apply", plans_to_json(*plans, previous)])
            self._plans[name] = plans

    def _unshape(self, name: str, previous: tuple[EgressPlan | None, EgressPlan | None]) -> None:
        """Remove shaping from a container's eth0 and ifb (needs NET_ADMIN)."""
        self.exec_json(name, [*TC_MODULE, "apply", plans_to_json(None, None, previous)])

    def class_rates(self, device: str) -> dict[str, dict[int, int]]:
        """Configured HTB rates (bit/s by class minor) on the device's eth0 and ifb0."""
        raw = self.exec_json(device, [*TC_MODULE, "rates"])
        return {ifname: {int(k): v for k, v in rates.items()} for ifname, rates in raw.items()}

    def counter_reader(self, device: str) -> CounterReader | None:
        """The container's cgroup CPU and eth0 bytes, read on this host through its init's pid
        (None when the engine runs elsewhere: the power meter then skips the device)."""
        container = self.container(device)
        container.reload()
        return pid_reader(int(container.attrs.get("State", {}).get("Pid") or 0))

    def quota_cpus(self, device: str) -> float:
        cpus = self.device(device).cpus
        return float(cpus) if cpus is not None else float(self.client.info().get("NCPU") or 1)

    def resource_events(self, device: str) -> CgroupEvents:
        """OOM kills, limit hits and peak memory of the device's container (cgroup v1 or v2)."""
        script = (
            "cd /sys/fs/cgroup; if [ -f memory.events ]; then echo v2; cat memory.events; "
            "echo peak $(cat memory.peak 2>/dev/null || echo 0); else cd memory; echo v1; "
            "cat memory.oom_control; echo max $(cat memory.failcnt); "
            "echo peak $(cat memory.max_usage_in_bytes); fi"
        )
        result = self.container(device).exec_run(["sh", "-c", script], user="root")
        fields = {}
        for line in result.output.decode().splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1].isdigit():
                fields[parts[0]] = int(parts[1])
        return CgroupEvents(fields.get("oom_kill", 0), fields.get("max", 0), fields.get("peak", 0))

    def _teardown(self) -> None:
        if self.adopted:  # the containers stay up: remove only this run's shaping
            plans, self._plans = self._plans, {}
            errors = []
            for name, previous in plans.items():
                try:
                    self._unshape(name, previous)
                except Exception as error:  # noqa: BLE001 - raised after every device is tried
                    errors.append(error)
            if errors:
                raise errors[0]
            return
        import docker.errors

        try:
            for container in self.containers.values():
                try:
                    container.remove(force=True, v=True)
                except docker.errors.NotFound:
                    pass
            if self.network is not None:
                try:
                    self.network.remove()
                except docker.errors.NotFound:
                    pass
        finally:
            self.removed = docker_cleanup.clean(self.run_id, self.client)
            lease.release(self.run_id)
