"""The local backend: one network namespace + cgroup per device, shaped veths to a bridge.

With root, `up()` builds (all labelled with the run id, see `naming`):

- a hub namespace holding a bridge; per device a namespace whose ``eth0`` is a
  veth to that bridge, addressed in a free 10.213.N.0/24, loopback up;
- a cgroup per device with its CPU quota and memory limit;
- HTB shaping on both ends of each device's veth (see `shaping`), netem
  leaves where the kernel has netem (else delay/jitter/loss are refused);
- optionally (`host_link=True`) a veth from the caller's namespace to the
  bridge, so host processes reach devices at `address(dev)` and devices reach
  the host at `host_address`. Without it the devices are isolated from the
  host network; control traffic can use Unix sockets (the filesystem is shared).

Without root it falls back to `fallback.DegradedCluster` (plain processes on
loopback, CPU affinity, thread limits), recorded in `fidelity.level`.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterator
from contextlib import contextmanager

from testbed.emulation import cgroups, cleanup, lease
from testbed.emulation.cgroups import CgroupEvents, DeviceCgroup
from testbed.emulation.config import ClusterSpec, LinkSettings
from testbed.emulation.fidelity import FULL, Fidelity
from testbed.emulation.handle import ClusterHandle
from testbed.emulation.local import topology
from testbed.emulation.local.fallback import DegradedCluster
from testbed.emulation.naming import DEVICE_IFNAME, RunNames, check_run_id
from testbed.emulation.netem import check_settings, netem_available, require_netem
from testbed.emulation.profiles import ResolvedDevice, gpu_count
from testbed.emulation.resolve import resolve_devices
from testbed.emulation.shaping import EgressPlan, device_egress, hub_egress
from testbed.emulation.tc import apply_plan
from testbed.emulation.usage import CounterReader, cgroup_reader


class LocalBackend:
    """Realises a ClusterSpec on this machine (namespaces with root, loopback without)."""

    name = "local"

    def __init__(self, run_id: str, *, privileged: bool | None = None) -> None:
        self.run_id = check_run_id(run_id)
        self.privileged = os.geteuid() == 0 if privileged is None else privileged

    @contextmanager
    def up(self, cluster: ClusterSpec, *, host_link: bool = False) -> Iterator[ClusterHandle]:
        """Build the cluster, yield its handle, and always take it down afterwards."""
        handle = self.start(cluster, host_link=host_link)
        try:
            yield handle
        finally:
            handle.down()

    def start(self, cluster: ClusterSpec, *, host_link: bool = False) -> ClusterHandle:
        """Build the cluster; on any failure, remove what was made and re-raise."""
        if cluster.backend != self.name:
            raise ValueError(f"cluster asks for backend {cluster.backend!r}; this is 'local'")
        if not self.privileged:
            return DegradedCluster.create(self.run_id, cluster)
        netem = netem_available()
        require_netem(cluster, netem)
        devices = resolve_devices(cluster.devices, gpu_count())
        lease.take(self.run_id)  # before anything exists: a killed controller's run is found
        handle = NamespacedCluster(self.run_id, cluster, devices, Fidelity(FULL, netem=netem))
        try:
            handle.build(host_link)
        except BaseException:
            handle.down()
            raise
        return handle


class NamespacedCluster(ClusterHandle):
    """A cluster of network namespaces + cgroups; made by `LocalBackend.start` as root."""

    def __init__(
        self,
        run_id: str,
        cluster: ClusterSpec,
        devices: dict[str, ResolvedDevice],
        fidelity: Fidelity,
    ) -> None:
        super().__init__(run_id, cluster, devices, fidelity)
        self.names = RunNames(run_id)
        self.index = {name: i for i, name in enumerate(devices)}
        self.addresses: dict[str, str] = {}
        self.cgroups: dict[str, DeviceCgroup] = {}
        self.subnet: ipaddress.IPv4Network | None = None
        self.removed: cleanup.Leftovers | None = None
        self._plans: dict[tuple[str, str], EgressPlan | None] = {}

    def build(self, host_link: bool) -> None:
        existing = [n for n in topology.list_netns() if self.names.owns_netns(n)]
        if existing:
            raise RuntimeError(
                f"run {self.run_id!r} already has namespaces {existing}; it is up elsewhere, "
                f"or crashed: remove them with testbed.emulation.cleanup.clean({self.run_id!r})"
            )
        self.subnet = subnet = topology.free_subnet(start=int(self.names.tag, 16))
        topology.create_hub(self.names)
        for name, i in self.index.items():
            self.addresses[name] = topology.device_address(subnet, i)
            topology.add_device(self.names, name, i, self.addresses[name], subnet.prefixlen)
            self.cgroups[name] = self._make_cgroup(self.devices[name])
        self._reshape(set(self.devices), dict(self.links))
        if host_link:
            self.host_address = topology.host_address(subnet)
            topology.add_host_link(self.names, self.host_address, subnet.prefixlen)

    def _make_cgroup(self, device: ResolvedDevice) -> DeviceCgroup:
        group = cgroups.create(self.run_id, device.name)
        group.set_cpus(device.cpus)
        group.set_memory(device.memory_bytes)
        return group

    # -- ClusterHandle ---------------------------------------------------------------------
    def address(self, device: str) -> str:
        self.device(device)
        return self.addresses[device]

    def netns(self, device: str) -> str:
        return self.names.device_netns(self.device(device).name)

    def _launch_args(self, device: str) -> list[str]:
        args = ["--netns", topology.netns_path(self.netns(device))]
        for procs in self.cgroups[device].procs_files:
            args += ["--cgroup", str(procs)]
        return args

    def _apply_cpus(self, device: str, cpus: float) -> None:
        self.cgroups[device].set_cpus(cpus)

    def _apply_link(self, key: tuple[str, ...], settings: LinkSettings) -> None:
        check_settings(key, settings, bool(self.fidelity.netem))
        self._reshape(set(key), {**self.links, key: settings})

    def _reshape_all(self) -> None:
        self._reshape(set(self.devices), dict(self.links))

    def _reshape(self, devices: set[str], links: dict[tuple[str, ...], LinkSettings]) -> None:
        """Re-plan and re-apply the egress of each named device and of its hub port."""
        from pyroute2 import IPRoute

        for name in sorted(devices):
            plan = device_egress(links, name, self.addresses, self.unshaped)
            with IPRoute(netns=self.netns(name)) as ipr:
                self._apply(ipr, (self.netns(name), DEVICE_IFNAME), plan)
            with IPRoute(netns=self.names.hub_netns) as ipr:
                self._apply(
                    ipr,
                    (self.names.hub_netns, self.names.hub_veth(self.index[name])),
                    hub_egress(links, name),
                )

    def _apply(self, ipr: object, where: tuple[str, str], plan: EgressPlan | None) -> None:
        (index,) = ipr.link_lookup(ifname=where[1])  # type: ignore[attr-defined]
        apply_plan(ipr, index, plan, self._plans.get(where))
        self._plans[where] = plan

    def counter_reader(self, device: str) -> CounterReader:
        """CPU of the device's cgroup; bytes of its eth0 (read through a process inside)."""
        return cgroup_reader(self.cgroups[self.device(device).name])

    def device_pids(self, device: str) -> list[int]:
        """Every process in the device's cgroup."""
        return self.cgroups[self.device(device).name].pids()

    def _set_link_up(self, device: str, up: bool) -> None:
        """The hub's end of the device's veth down (or up): the device loses carrier, its
        addresses and routes stay, packets in flight are dropped (TCP retransmits them later)."""
        from pyroute2 import IPRoute

        with IPRoute(netns=self.names.hub_netns) as ipr:
            (index,) = ipr.link_lookup(ifname=self.names.hub_veth(self.index[device]))
            ipr.link("set", index=index, state="up" if up else "down")

    def resource_events(self, device: str) -> CgroupEvents:
        """OOM kills and memory-limit hits recorded for the device's cgroup."""
        return self.cgroups[self.device(device).name].events()

    def _teardown(self) -> None:
        try:
            for group in self.cgroups.values():
                group.remove()
        finally:
            self.removed = cleanup.clean(self.run_id)
            lease.release(self.run_id)
