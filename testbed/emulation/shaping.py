"""Pure link-shaping plans: which HTB classes (rate, netem leaf, destination) go on which egress.

Topology: every device's ``eth0`` hangs off one bridge (in a hub namespace) by
a veth pair. A packet from A to B leaves A's ``eth0`` (A's egress) and then
the hub-side veth of B (the hub's egress towards B). So:

- a *device link* ``{device: A, rate, delay, loss}`` is realised on A's
  ``eth0`` egress (A's upload) **and** on the hub-side veth of A (A's
  download). Ingress is shaped as the other end's egress, not with an ifb +
  mirred redirect: both ends of the veth are ours, egress shaping lets the
  sender's TCP see back-pressure from the qdisc, and there is no extra
  device to create and clean up. Delay and loss apply once per direction,
  as in Mininet's TCLink (a ping across one link sees twice the delay).
- a *pair link* ``{pair: [A, B], ...}`` is an HTB class on A's egress that a
  u32 filter fills with packets for B's address (and the mirror on B). Under
  a device link it is a child of A's root class: its rate is capped by A's,
  its delay adds to A's, its loss compounds with A's.

Under a device link, packets shorter than 128 bytes (TCP ACKs, HTTP/2 window updates and
pings, small RPC replies) go to a priority class, so a bulk flow does not hold back the
acknowledgements of a flow in the other direction. That is what fq_codel, Linux's default
qdisc on a real board, does for sparse flows. This kernel has no fq_codel, sfq or prio,
so the priority comes from an HTB class. The children's guaranteed rates add up to the
link's rate and each child borrows up to its cap, so the link still caps all of them
together. (HTB lets a class send its own guaranteed rate whatever its parent has left.)

The plans are data; `tc.apply_plan` writes them with pyroute2.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from testbed.emulation.config import LinkSettings

UNLIMITED_BPS = 100 * 10**9  # "no rate": far above what a veth carries here
CONSERVATIVE_HZ = 100  # lowest common kernel HZ; see burst_bytes
BURST_FLOOR_BYTES = 32 * 1024
ROOT_MINOR, SMALL_MINOR, DEFAULT_MINOR, PAIR_MINOR_BASE = 0x1, 0x2, 0x10, 0x100
UNSHAPED_MINOR_BASE = 0x200  # classes beside the link (not under it) for unshaped destinations
SMALL_PACKET_BYTES = 128  # IPv4 total length below which a packet takes the priority class
SMALL_SHARE = 0.1  # rate guaranteed to the small-packet class (it may borrow up to the link)


def burst_bytes(rate_bps: int) -> int:
    """Token-bucket depth for a rate: 10 ms of credit, at least 32 KiB.

    The bucket fills continuously, but the qdisc only sends when its watchdog
    timer and the transmit softirq actually run. Credit that arrives while the
    bucket is full is lost, so the bucket must hold what accrues during the
    longest usual gap: about one scheduler tick (4 ms at HZ=250, 10 ms at
    HZ=100), longer on a busy machine. A fixed small burst holds only
    microseconds at high rates -- 15 KB is 120 us at 1 Gbit -- so every late
    timer loses credit for good and the link undershoots. Measured on this
    project's CI machine (tbf on a veth, HZ=250, 2 shared cores, wire rate):
    at 1 Gbit a 20 KB burst gave 72%, 64 KB 48%, 250 KB 90%, 500 KB (rate/HZ)
    96-99%, 1-2 MB 91-101%; at 100 Mbit 5 KB gave 97%, 20 KB 99.5%. So the
    burst is rate/HZ with the conservative HZ=100 (1.25 MB at 1 Gbit: HTB then
    measured 0.99-1.01, see bench_links). The floor keeps slow links from
    pausing after every packet and stays well above a 1514-byte frame: at or
    below it tbf drops full-size packets and a TCP flow stalls.
    """
    if rate_bps <= 0:
        raise ValueError(f"rate {rate_bps} bit/s is not positive; expected > 0")
    return max(rate_bps // 8 // CONSERVATIVE_HZ, BURST_FLOOR_BYTES)


QUEUE_S = 0.02  # leaf FIFO depth in seconds of the link's rate
QUEUE_FLOOR_PACKETS = 32
MTU_BYTES = 1514


def queue_packets(rate_bps: int) -> int:
    """Leaf FIFO limit: 20 ms of the rate, at least 32 full-size frames.

    The kernel's default leaf FIFO holds the interface's txqueuelen (1000 frames on a
    veth): 1.2 s of queue at 10 Mbit. A bulk flow in one direction then delays the TCP
    ACKs, HTTP/2 window updates and RPC replies of the flow in the other direction by
    that much (their packets share the FIFO), and the RPC sender idles between
    messages. Measured: four-layer sg on 4 edge devices at 10 Mbit ran at 0.72 of the
    link bound with the default queue. A bounded queue keeps the added delay near 20 ms
    (39 ms at the floor, 10 Mbit); the kernel here has no fq_codel or sfq to separate
    flows instead. 1 Gbit gets 1651 frames, about what the default holds.
    """
    if rate_bps <= 0:
        raise ValueError(f"rate {rate_bps} bit/s is not positive; expected > 0")
    return max(QUEUE_FLOOR_PACKETS, round(rate_bps / 8 * QUEUE_S / MTU_BYTES))


@dataclass(frozen=True)
class ClassPlan:
    """One HTB class: its rate, the netem settings of its leaf, the destination it serves."""

    minor: int
    parent_minor: int | None  # None: directly under the HTB qdisc
    rate_bps: int  # guaranteed; the class borrows from its parent up to ceil_bps
    netem: LinkSettings | None = None  # delay/jitter/loss for a netem leaf, if any
    dst: str | None = None  # IPv4 address a u32 filter steers into this class
    ceil_bps: int | None = None  # None: the rate (no borrowing)
    prio: int = 1  # HTB serves lower values first
    small: bool = False  # a u32 filter steers packets under SMALL_PACKET_BYTES here

    @property
    def ceil(self) -> int:
        return self.ceil_bps or self.rate_bps


@dataclass(frozen=True)
class EgressPlan:
    """An HTB tree for one interface's egress; default_minor 0 sends unmatched traffic direct."""

    default_minor: int
    classes: tuple[ClassPlan, ...]

    @property
    def structure(self) -> tuple[tuple[int, int | None, str | None], ...]:
        """What must match for an in-place change (rates and netem values may differ)."""
        return tuple((c.minor, c.parent_minor, c.dst) for c in self.classes)


def egress_plan(
    own: LinkSettings | None, pairs: list[tuple[str, LinkSettings]]
) -> EgressPlan | None:
    """The HTB tree for one egress: the device's own link and its pair links (by dst)."""
    if own is None and not pairs:
        return None
    if own is None:
        leaves = [_leaf(PAIR_MINOR_BASE + i, None, s, dst) for i, (dst, s) in enumerate(pairs)]
        return EgressPlan(0, tuple(leaves))
    link = own.rate_bps or UNLIMITED_BPS
    root = ClassPlan(ROOT_MINOR, None, link)
    caps = [link, *(compose(own, p).rate_bps or link for _, p in pairs)]
    # guaranteed rates add up to the link (HTB lets a class send its own rate regardless of
    # its parent), each class borrows up to its cap: the link stays the cap for all of them
    share = (link - round(link * SMALL_SHARE)) // len(caps)
    small = ClassPlan(SMALL_MINOR, ROOT_MINOR, link - share * len(caps), _netem(own), None, link,
                      prio=0, small=True)  # fmt: skip
    default = _leaf(DEFAULT_MINOR, ROOT_MINOR, own, None, min(share, caps[0]), link)
    leaves = [
        _leaf(PAIR_MINOR_BASE + i, ROOT_MINOR, compose(own, s), dst, min(share, cap), cap)
        for i, ((dst, s), cap) in enumerate(zip(pairs, caps[1:], strict=True))
    ]
    return EgressPlan(DEFAULT_MINOR, (root, small, default, *leaves))


def _leaf(
    minor: int,
    parent: int | None,
    s: LinkSettings,
    dst: str | None,
    rate: int | None = None,
    ceil: int | None = None,
) -> ClassPlan:
    return ClassPlan(minor, parent, rate or s.rate_bps or UNLIMITED_BPS, _netem(s), dst, ceil)


def _netem(s: LinkSettings) -> LinkSettings | None:
    return s if s.netem_settings() else None


def compose(outer: LinkSettings, inner: LinkSettings) -> LinkSettings:
    """A pair link inside a device link: the lower rate, added delays, compounded loss."""
    rates = [r for r in (outer.rate_bps, inner.rate_bps) if r]
    delay_us = round((outer.delay_s + inner.delay_s) * 1e6)
    jitter_us = round((outer.jitter_s + inner.jitter_s) * 1e6)
    loss = 100 * (1 - (1 - outer.loss_pct / 100) * (1 - inner.loss_pct / 100))
    return LinkSettings(
        rate=f"{min(rates)}bit" if rates else None,
        delay=f"{delay_us}us" if delay_us else None,
        jitter=f"{jitter_us}us" if jitter_us else None,
        loss=f"{loss:.6g}%" if loss else None,
    )


Links = Mapping[tuple[str, ...], LinkSettings]


def device_egress(links: Links, device: str, addresses: Mapping[str, str],
                  unshaped: Sequence[str] = ()) -> EgressPlan | None:
    """Plan for the device's own eth0: its upload, and its pair links keyed by peer address.
    Packets for an `unshaped` address (the host's observer services) bypass the link: a class
    of their own directly under the qdisc, at no limit."""
    pairs = [
        (addresses[_peer(key, device)], settings)
        for key, settings in sorted(links.items())
        if len(key) == 2 and device in key
    ]
    plan = egress_plan(links.get((device,)), pairs)
    if plan is None or not unshaped:
        return plan
    free = [ClassPlan(UNSHAPED_MINOR_BASE + i, None, UNLIMITED_BPS, dst=address)
            for i, address in enumerate(unshaped)]
    return EgressPlan(plan.default_minor, (*plan.classes, *free))


def hub_egress(links: Links, device: str) -> EgressPlan | None:
    """Plan for the hub-side veth of a device: its download."""
    return egress_plan(links.get((device,)), [])


def path_rate_bps(links: Links, src: str, dst: str) -> int | None:
    """The configured bottleneck from src to dst (None when nothing on the path is shaped)."""
    keys = [(src,), tuple(sorted((src, dst))), (dst,)]
    rates = [r for k in keys if k in links and (r := links[k].rate_bps)]
    return min(rates) if rates else None


def _peer(key: tuple[str, ...], device: str) -> str:
    return key[1] if key[0] == device else key[0]
