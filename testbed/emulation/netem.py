"""netem (delay, jitter, loss): detected at run time, refused clearly where the kernel lacks it."""

from __future__ import annotations

import functools
import secrets
from collections.abc import Iterable

from testbed.emulation.config import ClusterSpec, LinkSettings, link_label


class NetemUnavailable(RuntimeError):
    """A link asks for delay/jitter/loss but this kernel has no netem qdisc."""

    def __init__(self, link: str, setting: str, value: str) -> None:
        self.link, self.setting, self.value = link, setting, value
        super().__init__(
            f"link {link} asks for {setting} {value!r}, but this kernel has no netem qdisc "
            "(CONFIG_NET_SCH_NETEM), so delay, jitter and loss cannot be emulated here; "
            f"remove {setting!r} from the link or run on a host with netem "
            "(modprobe sch_netem; Debian/Ubuntu kernels ship it)"
        )


@functools.cache
def netem_available() -> bool:
    """Try to add a netem qdisc on a veth inside a throwaway namespace (needs root)."""
    from pyroute2 import IPRoute, netns
    from pyroute2.netlink.exceptions import NetlinkError

    name = f"tb-{secrets.token_hex(3)}-netem-probe"  # labelled: cleanup removes it if we crash
    netns.create(name)
    try:
        with IPRoute(netns=name) as ipr:
            ipr.link("add", ifname="probe0", kind="veth", peer="probe1")
            index = ipr.link_lookup(ifname="probe0")[0]
            try:
                ipr.tc("add", "netem", index, delay=1000)
            except NetlinkError:
                return False
            return True
    finally:
        netns.remove(name)


def netem_requests(cluster: ClusterSpec) -> Iterable[tuple[str, str, str]]:
    """(link label, setting, value) for every delay/jitter/loss in links and the schedule."""
    for link in list(cluster.links) + list(cluster.schedule):
        for setting, value in link.netem_settings().items():
            yield link.label, setting, value


def require_netem(cluster: ClusterSpec, available: bool) -> None:
    """Raise NetemUnavailable for the first delay/jitter/loss the kernel cannot realise."""
    if available:
        return
    for label, setting, value in netem_requests(cluster):
        raise NetemUnavailable(label, setting, value)


def check_settings(key: tuple[str, ...], settings: LinkSettings, available: bool) -> None:
    """The same check for one run-time change (update_link)."""
    if not available:
        for setting, value in settings.netem_settings().items():
            raise NetemUnavailable(link_label(key), setting, value)


def netem_options(settings: LinkSettings, rate_bps: int | None) -> dict[str, float | int]:
    """pyroute2 netem keyword arguments: delay/jitter in microseconds, loss in percent.

    The queue limit (packets) must hold a bandwidth-delay product, or netem
    itself drops packets at high rates and long delays.
    """
    delay_s = settings.delay_s + settings.jitter_s
    bdp_packets = int((rate_bps or 10**9) / 8 * delay_s / 1500) * 2
    options: dict[str, float | int] = {"limit": max(1000, bdp_packets)}
    if settings.delay_s:
        options["delay"] = int(settings.delay_s * 1e6)
    if settings.jitter_s:
        options["jitter"] = int(settings.jitter_s * 1e6)
    if settings.loss_pct:
        options["loss"] = settings.loss_pct
    return options
