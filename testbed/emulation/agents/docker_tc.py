"""Link shaping run inside a device container (needs NET_ADMIN): HTB on eth0 and on an ifb.

The docker backend cannot reach a container's peer end of its veth (it sits
in the engine's namespace, possibly on another host), so both directions
are shaped from inside the container:

- upload and pair links: the `shaping.device_egress` plan on ``eth0``'s egress;
- download: the `shaping.hub_egress` plan on ``ifb0``, whose egress receives
  every packet arriving on ``eth0`` (an ``ingress`` qdisc with a u32
  match-all filter and a mirred redirect). Mirred pushes the Ethernet header
  back, so the ifb counts the same bytes as an egress shaper would.

Run as ``python3 -m testbed.emulation.agents.docker_tc COMMAND`` with ``apply JSON``
(plans, see `plans_to_json`), ``netem`` (is there a netem qdisc?) or
``rates`` (configured class rates read back); it prints one JSON object.
"""

from __future__ import annotations

import errno
import json
import sys
from typing import Any

from testbed.emulation.config import LinkSettings
from testbed.emulation.shaping import ClassPlan, EgressPlan
from testbed.emulation.tc import apply_plan, class_rates

ETH = "eth0"
IFB = "ifb0"
INGRESS_HANDLE = 0xFFFF0000
TC_H_INGRESS = 0xFFFFFFF1  # parent of an ingress qdisc
ETH_P_ALL = 0x0003


def plan_to_dict(plan: EgressPlan | None) -> dict[str, Any] | None:
    if plan is None:
        return None
    classes = [
        {**c.__dict__, "netem": None if c.netem is None else c.netem.settings()}
        for c in plan.classes
    ]
    return {"default_minor": plan.default_minor, "classes": classes}


def plan_from_dict(raw: dict[str, Any] | None) -> EgressPlan | None:
    if raw is None:
        return None
    classes = tuple(
        ClassPlan(**{**c, "netem": None if c["netem"] is None else LinkSettings(**c["netem"])})
        for c in raw["classes"]
    )
    return EgressPlan(raw["default_minor"], classes)


def plans_to_json(
    egress: EgressPlan | None,
    ingress: EgressPlan | None,
    previous: tuple[EgressPlan | None, EgressPlan | None] = (None, None),
) -> str:
    """The `apply` argument: new and previous plans for eth0 egress and the ifb."""
    return json.dumps(
        {
            "egress": plan_to_dict(egress),
            "ingress": plan_to_dict(ingress),
            "previous_egress": plan_to_dict(previous[0]),
            "previous_ingress": plan_to_dict(previous[1]),
        }
    )


def _index(ipr: Any, ifname: str) -> int | None:
    found = ipr.link_lookup(ifname=ifname)
    return found[0] if found else None


def _ensure_ifb(ipr: Any, eth: int) -> int:
    """ifb0 up, and everything arriving on eth0 redirected to its egress."""
    ifb = _index(ipr, IFB)
    if ifb is None:
        ipr.link("add", ifname=IFB, kind="ifb")
        ifb = _index(ipr, IFB)
        assert ifb is not None
        ipr.link("set", index=ifb, state="up")
    if not any(q["parent"] == TC_H_INGRESS for q in ipr.get_qdiscs(index=eth)):
        _add_redirect(ipr, eth, ifb)
    return ifb


def _add_redirect(ipr: Any, eth: int, ifb: int) -> None:
    from pyroute2.netlink.exceptions import NetlinkError

    try:
        ipr.tc("add", "ingress", eth, INGRESS_HANDLE)
    except NetlinkError as error:
        if error.code != errno.EEXIST:
            raise
    redirect = {"kind": "mirred", "direction": "egress", "action": "redirect", "ifindex": ifb}
    ipr.tc(
        "add-filter", "u32", eth, parent=INGRESS_HANDLE, prio=10, protocol=ETH_P_ALL,
        keys=["0x0/0x0+0"], target=0x10000, action=redirect,
    )  # fmt: skip


def _remove_ifb(ipr: Any, eth: int) -> None:
    from pyroute2.netlink.exceptions import NetlinkError

    try:
        ipr.tc("del", "ingress", eth, INGRESS_HANDLE)
    except NetlinkError as error:
        if error.code not in (errno.ENOENT, errno.EINVAL):
            raise
    ifb = _index(ipr, IFB)
    if ifb is not None:
        ipr.link("del", index=ifb)


def apply(raw: dict[str, Any]) -> dict[str, Any]:
    """Make eth0's egress and the download ifb match the given plans."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        eth = _index(ipr, ETH)
        if eth is None:
            raise RuntimeError(f"no interface {ETH!r} in this container; expected the device's NIC")
        apply_plan(ipr, eth, plan_from_dict(raw["egress"]), plan_from_dict(raw["previous_egress"]))
        ingress = plan_from_dict(raw["ingress"])
        if ingress is None:
            _remove_ifb(ipr, eth)
            return {"ok": True}
        ifb = _ensure_ifb(ipr, eth)
        apply_plan(ipr, ifb, ingress, plan_from_dict(raw["previous_ingress"]))
    return {"ok": True}


def netem() -> dict[str, Any]:
    """Try a netem qdisc on a throwaway veth pair in this container's namespace."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    with IPRoute() as ipr:
        ipr.link("add", ifname="tbnetem0", kind="veth", peer="tbnetem1")
        index = ipr.link_lookup(ifname="tbnetem0")[0]
        try:
            ipr.tc("add", "netem", index, delay=1000)
            available = True
        except NetlinkError:
            available = False
        finally:
            ipr.link("del", index=index)
    return {"netem": available}


def rates() -> dict[str, Any]:
    """Configured HTB class rates (bit/s by class minor) on eth0 and the ifb."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        out = {}
        for name in (ETH, IFB):
            index = _index(ipr, name)
            out[name] = {} if index is None else class_rates(ipr, index)
    return out


def main(argv: list[str]) -> int:
    commands = {"apply": lambda: apply(json.loads(argv[1])), "netem": netem, "rates": rates}
    if not argv or argv[0] not in commands or (argv[0] == "apply") != (len(argv) == 2):
        print(f"usage: docker_tc apply JSON | netem | rates; got {argv!r}", file=sys.stderr)
        return 2
    print(json.dumps(commands[argv[0]]()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
