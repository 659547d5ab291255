"""Labels: the names every emulation resource carries so cleanup can find it by run id.

Namespaces are called ``tb-<h6>-<runid>`` (the hub) and ``tb-<h6>-<runid>-<dev>``
(one per device), where ``<h6>`` is a 6-hex-digit hash of the run id. Run ids
contain dashes ("20250101-120000-small-ab12"), so without the hash the prefix
of run ``a`` would also match run ``a-b``; with it, a run's namespaces are
exactly those equal to the hub name or starting with ``hub + "-"``.
Interface names are limited to 15 characters, so links carry only the hash:
``tb<h6>br`` (bridge), ``tb<h6>v<i>`` (hub side of device i's veth),
``tb<h6>g``/``tb<h6>h`` (optional host link, root and hub side).
Cgroups live in ``testbed-<runid>/<dev>`` under each controller.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

RUN_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
DEVICE_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}"
NETNS_LABEL = re.compile(r"^tb-[0-9a-f]{6}-")
LINK_LABEL = re.compile(r"^tb[0-9a-f]{6}[a-z][0-9a-z]{0,6}$")
CGROUP_PREFIX = "testbed-"
DEVICE_IFNAME = "eth0"


def check_run_id(run_id: str) -> str:
    if not isinstance(run_id, str) or not re.fullmatch(RUN_ID_PATTERN, run_id):
        raise ValueError(
            f"run id {run_id!r} is not usable in resource names; expected 1-64 characters "
            "from letters, digits, '_', '.', '-', starting with a letter or digit"
        )
    return run_id


def check_device_name(name: str) -> str:
    if not isinstance(name, str) or not re.fullmatch(DEVICE_PATTERN, name):
        raise ValueError(
            f"device name {name!r} is not usable in resource names; expected 1-32 characters "
            "from letters, digits, '_', '-', starting with a letter or digit"
        )
    return name


def short_hash(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:6]


@dataclass(frozen=True)
class RunNames:
    """Every name one run uses, derived from its run id."""

    run_id: str

    def __post_init__(self) -> None:
        check_run_id(self.run_id)

    @property
    def tag(self) -> str:
        return short_hash(self.run_id)

    @property
    def hub_netns(self) -> str:
        return f"tb-{self.tag}-{self.run_id}"

    def device_netns(self, device: str) -> str:
        return f"{self.hub_netns}-{check_device_name(device)}"

    def owns_netns(self, name: str) -> bool:
        return name == self.hub_netns or name.startswith(self.hub_netns + "-")

    @property
    def bridge(self) -> str:
        return f"tb{self.tag}br"

    def hub_veth(self, index: int) -> str:
        if not 0 <= index < 10**6:
            raise ValueError(f"device index {index} out of range; expected 0..999999")
        return f"tb{self.tag}v{index}"

    @property
    def host_if(self) -> str:
        return f"tb{self.tag}g"

    @property
    def host_peer_if(self) -> str:
        return f"tb{self.tag}h"

    def owns_link(self, ifname: str) -> bool:
        return bool(LINK_LABEL.match(ifname)) and ifname.startswith(f"tb{self.tag}")

def is_labelled_netns(name: str) -> bool:
    return bool(NETNS_LABEL.match(name))


def is_labelled_link(ifname: str) -> bool:
    return bool(LINK_LABEL.match(ifname))
