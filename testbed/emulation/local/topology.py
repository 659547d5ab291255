"""Namespaces, bridge and veth pairs of a local cluster, made with pyroute2 (needs root).

The bridge lives in a dedicated hub namespace, not the root one: nothing of
the emulation is visible to the host's network stack or firewall (Docker's
br_netfilter + FORWARD DROP would silently drop bridged traffic in the root
namespace), and deleting the hub removes the bridge and every hub-side veth.
The root namespace is touched only by the optional host link.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

from pyroute2 import IPRoute, netns

from testbed.emulation.naming import DEVICE_IFNAME, RunNames

NETNS_DIR = Path("/run/netns")
SUBNET_BASE = ipaddress.IPv4Network("10.213.0.0/16")
HOST_OCTET = 254


def netns_path(name: str) -> str:
    return str(NETNS_DIR / name)


def list_netns() -> list[str]:
    return sorted(netns.listnetns())


def create_hub(names: RunNames) -> None:
    """The hub namespace with its bridge, up."""
    netns.create(names.hub_netns)
    with IPRoute(netns=names.hub_netns) as hub:
        hub.link("add", ifname=names.bridge, kind="bridge")
        (bridge,) = hub.link_lookup(ifname=names.bridge)
        hub.link("set", index=bridge, state="up")
        _loopback_up(hub)


def add_device(names: RunNames, device: str, index: int, address: str, prefixlen: int) -> None:
    """The device namespace, joined to the bridge by a veth; eth0 addressed, lo up."""
    dev_ns = names.device_netns(device)
    netns.create(dev_ns)
    hub_if = names.hub_veth(index)
    with IPRoute(netns=names.hub_netns) as hub:
        hub.link(
            "add", ifname=hub_if, kind="veth", peer={"ifname": DEVICE_IFNAME, "net_ns_fd": dev_ns}
        )
        (port,) = hub.link_lookup(ifname=hub_if)
        (bridge,) = hub.link_lookup(ifname=names.bridge)
        hub.link("set", index=port, master=bridge, state="up")
    with IPRoute(netns=dev_ns) as ipr:
        (eth,) = ipr.link_lookup(ifname=DEVICE_IFNAME)
        ipr.addr("add", index=eth, address=address, prefixlen=prefixlen)
        ipr.link("set", index=eth, state="up")
        _loopback_up(ipr)


def add_host_link(names: RunNames, address: str, prefixlen: int) -> None:
    """A veth from the root namespace to the bridge so the host reaches the devices."""
    own_netns = os.open("/proc/self/ns/net", os.O_RDONLY)  # the namespace we were started in
    try:
        with IPRoute(netns=names.hub_netns) as hub:
            hub.link(
                "add",
                ifname=names.host_peer_if,
                kind="veth",
                peer={"ifname": names.host_if, "net_ns_fd": own_netns},
            )
    finally:
        os.close(own_netns)
    with IPRoute(netns=names.hub_netns) as hub:
        (port,) = hub.link_lookup(ifname=names.host_peer_if)
        (bridge,) = hub.link_lookup(ifname=names.bridge)
        hub.link("set", index=port, master=bridge, state="up")
    with IPRoute() as root:
        (host,) = root.link_lookup(ifname=names.host_if)
        root.addr("add", index=host, address=address, prefixlen=prefixlen)
        root.link("set", index=host, state="up")


def _loopback_up(ipr: IPRoute) -> None:
    (lo,) = ipr.link_lookup(ifname="lo")
    ipr.link("set", index=lo, state="up")


def free_subnet(start: int = 0) -> ipaddress.IPv4Network:
    """A /24 of 10.213.0.0/16 that no address or route of the root namespace overlaps.

    The search begins at the `start`-th /24 (a hash of the run id), so runs
    started at the same moment rarely pick the same one.
    """
    with IPRoute() as root:
        used = [
            ipaddress.ip_network(f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}", strict=False)
            for a in root.get_addr(family=2)
        ]
        for route in root.get_routes(family=2):
            dst = route.get_attr("RTA_DST")
            if dst:
                used.append(ipaddress.ip_network(f"{dst}/{route['dst_len']}", strict=False))
    subnets = list(SUBNET_BASE.subnets(new_prefix=24))
    for i in range(len(subnets)):
        subnet = subnets[(start + i) % len(subnets)]
        if not any(subnet.overlaps(u) for u in used if u.prefixlen > 0):
            return subnet
    raise RuntimeError(f"every /24 of {SUBNET_BASE} is in use in the root namespace")


def device_address(subnet: ipaddress.IPv4Network, index: int) -> str:
    if not 0 <= index < HOST_OCTET - 1:
        raise ValueError(f"device index {index} out of range; expected 0..{HOST_OCTET - 2}")
    return str(subnet.network_address + index + 1)


def host_address(subnet: ipaddress.IPv4Network) -> str:
    return str(subnet.network_address + HOST_OCTET)
