"""Remove what crashed runs left behind: labelled namespaces, links, cgroups, containers, networks.

`clean(run_id)` removes one run's resources; `sweep()` those of every run whose controller is
dead (its `lease`), which every `testbed` command does first.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from testbed.emulation import cgroups, lease
from testbed.emulation.docker import cleanup as docker_cleanup
from testbed.emulation.naming import RunNames, is_labelled_link, is_labelled_netns

NETNS_DIR = Path("/run/netns")


@dataclass
class Leftovers:
    """Labelled resources found (by `find`) or removed (by `clean`)."""

    netns: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)  # in the root namespace
    cgroups: list[str] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)  # processes killed
    containers: list[str] = field(default_factory=list)  # docker, label testbed.run
    networks: list[str] = field(default_factory=list)  # docker, label testbed.run

    def __bool__(self) -> bool:
        return bool(self.netns or self.links or self.cgroups or self.containers or self.networks)


def find(run_id: str | None = None) -> Leftovers:
    """Labelled resources of one run (or of every run when run_id is None)."""
    names = RunNames(run_id) if run_id else None
    containers, networks = docker_cleanup.find(run_id)
    return Leftovers(
        netns=[n for n in _netns_names() if _ours_netns(n, names)],
        links=[i for i in _root_links() if _ours_link(i, names)],
        cgroups=[str(p) for p in _cgroup_dirs(run_id)],
        containers=containers,
        networks=networks,
    )


def clean(run_id: str | None = None) -> Leftovers:
    """Kill processes in labelled namespaces and cgroups, then remove them; returns what went."""
    found = find(run_id)
    removed = Leftovers()
    for path in found.cgroups:
        removed.pids += cgroups.kill_and_remove([Path(path)])
        removed.cgroups.append(path)
    for name in found.netns:
        removed.pids += _kill_netns_processes(name)
        _remove_netns(name)
        removed.netns.append(name)
    for ifname in found.links:
        if _delete_root_link(ifname):
            removed.links.append(ifname)
    if found.containers or found.networks:
        removed.containers, removed.networks = docker_cleanup.clean(run_id)
    return removed


def _ours_netns(name: str, names: RunNames | None) -> bool:
    return is_labelled_netns(name) and (names is None or names.owns_netns(name))


def _ours_link(ifname: str, names: RunNames | None) -> bool:
    return is_labelled_link(ifname) and (names is None or names.owns_link(ifname))


def _netns_names() -> list[str]:
    return sorted(p.name for p in NETNS_DIR.iterdir()) if NETNS_DIR.is_dir() else []


def _cgroup_dirs(run_id: str | None) -> list[Path]:
    if cgroups.detect_version() is None:
        return []
    return cgroups.run_dirs(run_id)


def _root_links() -> list[str]:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        return [str(link.get_attr("IFLA_IFNAME")) for link in ipr.get_links()]


def _delete_root_link(ifname: str) -> bool:
    """Delete a labelled root-namespace link; True if it existed. Its peer's namespace, just
    removed, may take it with it while we look (the kernel does that asynchronously): gone by
    the time we delete it (ENODEV) counts as removed."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=ifname)
        if found:
            try:
                ipr.link("del", index=found[0])  # a veth takes its peer with it
            except NetlinkError as error:
                if error.code != errno.ENODEV:
                    raise
        return bool(found)


def _remove_netns(name: str) -> None:
    from pyroute2 import netns

    try:
        netns.remove(name)
    except FileNotFoundError:
        pass


def _kill_netns_processes(name: str, timeout_s: float = 5.0) -> list[int]:
    """SIGKILL processes whose network namespace is this one (they would keep it alive)."""
    try:
        inode = os.stat(NETNS_DIR / name).st_ino
    except FileNotFoundError:
        return []
    pids = _pids_in_netns(inode)
    for pid in pids:
        _kill(pid)
    deadline = time.monotonic() + timeout_s
    while _pids_in_netns(inode) and time.monotonic() < deadline:
        time.sleep(0.02)
    return pids


def _pids_in_netns(inode: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.stat(entry / "ns" / "net").st_ino == inode:
                    pids.append(int(entry.name))
            except OSError:
                continue  # exited, or a kernel thread we may not inspect
    return pids


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def sweep() -> dict[str, Leftovers]:
    """Remove what every run whose controller is dead left behind (see `lease`); live runs and
    runs without a lease are left alone. Returns what went, by run id."""
    removed: dict[str, Leftovers] = {}
    for gone in lease.dead():
        with lease.exclusive(gone.run_id) as mine:
            if mine:  # else another sweep is at it right now
                removed[gone.run_id] = clean(gone.run_id)
                lease.release(gone.run_id)
    return removed


def describe(gone: Leftovers) -> str:
    return (f"namespaces {gone.netns}, links {gone.links}, cgroups {gone.cgroups}, "
            f"containers {gone.containers}, networks {gone.networks}, killed pids {gone.pids}")


def main(argv: list[str]) -> int:
    """python -m testbed.emulation.cleanup [RUN_ID]: that run's resources, or (no RUN_ID) those
    of every run whose controller is dead."""
    if argv:
        print(f"run {argv[0]}: removed {describe(clean(argv[0]))}")
        lease.release(argv[0])
        return 0
    swept = sweep()
    for run_id, gone in swept.items():
        print(f"run {run_id} (controller dead): removed {describe(gone)}")
    if not swept:
        print("no run with a dead controller left anything behind")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
