"""Write shaping plans to an interface with pyroute2 (HTB classes, netem leaves, u32 filters)."""

from __future__ import annotations

import errno
import ipaddress
from typing import Any

from pyroute2.netlink.exceptions import NetlinkError

from testbed.emulation.netem import netem_options
from testbed.emulation.shaping import (
    SMALL_PACKET_BYTES,
    ClassPlan,
    EgressPlan,
    burst_bytes,
    queue_packets,
)

HTB_MAJOR = 0x10000  # handle 1:
TC_H_ROOT = 0xFFFFFFFF
ETH_P_IP = 0x0800
MTU = 1514


def apply_plan(ipr: Any, index: int, plan: EgressPlan | None, previous: EgressPlan | None) -> None:
    """Make the interface's egress match `plan`; change in place when the tree is the same."""
    if plan is None:
        delete_root(ipr, index)
    elif previous is not None and previous.structure == plan.structure:
        for cls in plan.classes:
            ipr.tc("change-class", "htb", index, **_class_args(cls))
            _set_leaf(ipr, index, plan, cls)
    else:
        delete_root(ipr, index)
        ipr.tc("add", "htb", index, handle=HTB_MAJOR, default=plan.default_minor)
        for cls in plan.classes:
            ipr.tc("add-class", "htb", index, **_class_args(cls))
            _set_leaf(ipr, index, plan, cls)
            if cls.dst is not None:
                _add_dst_filter(ipr, index, cls)
            if cls.small:
                _add_small_filter(ipr, index, cls)


def delete_root(ipr: Any, index: int) -> None:
    """Remove the root qdisc (and everything under it); absent is fine."""
    try:
        ipr.tc("del", index=index, parent=TC_H_ROOT)
    except NetlinkError as error:
        if error.code not in (errno.ENOENT, errno.EINVAL):
            raise


def class_rates(ipr: Any, index: int) -> dict[int, int]:
    """Configured cap in bit/s per HTB class minor (its ceil), read back from the kernel."""
    rates = {}
    for cls in ipr.get_classes(index=index):
        params = cls.get_attr("TCA_OPTIONS").get_attr("TCA_HTB_PARMS")
        ceil64 = cls.get_attr("TCA_OPTIONS").get_attr("TCA_HTB_CEIL64")
        rates[cls["handle"] & 0xFFFF] = (ceil64 or params["ceil"]) * 8
    return rates


def _handle(minor: int) -> int:
    return HTB_MAJOR | minor


def _class_args(cls: ClassPlan) -> dict[str, Any]:
    rate, ceil = cls.rate_bps // 8, cls.ceil // 8  # pyroute2 takes bytes/s
    burst = burst_bytes(cls.ceil)  # sized for the fastest the class may send
    parent = HTB_MAJOR if cls.parent_minor is None else _handle(cls.parent_minor)
    return {
        "handle": _handle(cls.minor),
        "parent": parent,
        "rate": rate,
        "ceil": ceil,
        "burst": burst,
        "cburst": burst,
        "prio": cls.prio,
        # quantum only splits spare bandwidth between siblings; keep it where HTB is quiet
        "quantum": min(max(rate // 10, MTU), 200_000),
    }


def _set_leaf(ipr: Any, index: int, plan: EgressPlan, cls: ClassPlan) -> None:
    """A leaf class's queue: netem where delay/jitter/loss are set, else a FIFO sized for the
    rate (inner classes hold no queue)."""
    if any(c.parent_minor == cls.minor for c in plan.classes):
        return
    leaf = {"handle": cls.minor << 16, "parent": _handle(cls.minor)}
    if cls.netem is not None:
        ipr.tc("replace", "netem", index, **leaf, **netem_options(cls.netem, cls.ceil))
    else:
        ipr.tc("replace", "pfifo", index, **leaf, limit=queue_packets(cls.ceil))


def _add_dst_filter(ipr: Any, index: int, cls: ClassPlan) -> None:
    """Packets for the class's peer (IPv4 destination address at offset 16) into the class."""
    address = int(ipaddress.IPv4Address(cls.dst))
    _add_u32(ipr, index, cls, prio=1, key=f"0x{address:08x}/0xffffffff+16")


def _add_small_filter(ipr: Any, index: int, cls: ClassPlan) -> None:
    """IPv4 packets shorter than SMALL_PACKET_BYTES into the class; after the dst filters
    (prio 1), so a pair link's small packets stay in the pair's class."""
    mask = 0xFFFF & ~(SMALL_PACKET_BYTES - 1)  # total length (bytes 2-3) below 128
    _add_u32(ipr, index, cls, prio=2, key=f"0x00000000/0x{mask:08x}+0")


def _add_u32(ipr: Any, index: int, cls: ClassPlan, prio: int, key: str) -> None:
    ipr.tc(
        "add-filter", "u32", index, parent=HTB_MAJOR, prio=prio, protocol=ETH_P_IP,
        target=_handle(cls.minor), keys=[key],
    )  # fmt: skip
