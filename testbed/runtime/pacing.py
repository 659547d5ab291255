"""A user-space token bucket that paces a device's uploads where no kernel shaper does.

The no-root fallback of the local backend (`emulation.fallback`) cannot run
tc, so it sets `UPLINK_RATE_ENV` for each device that has an access-link rate
and the runtime's senders (`peers.StagePeer`, `peers.ParameterClient`) call
`consume` before each message. Backends that shape with tc never set it.

One bucket per worker process, shared by every sender thread (downstream,
upstream and parameter-server outboxes all leave through the device's one
uplink, as they do through one tc qdisc). Waits are reserved under a lock
and slept outside it, so concurrent senders queue in arrival order.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Callable, Mapping

UPLINK_RATE_ENV = "TESTBED_UPLINK_RATE_BPS"
BURST_HZ = 100  # as emulation.shaping.burst_bytes: credit for one slow scheduler tick (10 ms)
BURST_FLOOR_BYTES = 32 * 1024


def default_burst_bytes(rate_bps: float) -> int:
    """tc's rule for a bucket depth (>= rate/HZ, HZ=100), at least 32 KiB.

    The bucket only has to hold the credit that accrues while a sender sleeps
    longer than asked; messages larger than it are not refused, they wait
    in proportion to their size.
    """
    _check_rate(rate_bps)
    return max(int(rate_bps / 8 / BURST_HZ), BURST_FLOOR_BYTES)


def _check_rate(rate_bps: float) -> None:
    if not rate_bps > 0:  # also rejects NaN
        raise ValueError(f"pacing rate {rate_bps!r} bit/s is not positive; expected > 0")


class TokenBucket:
    """Bytes may leave at rate_bps, in bursts of up to burst_bytes; consume() waits for its turn.

    Tokens are bytes. A message larger than the tokens on hand is sent after
    the deficit has accrued (the bucket goes into debt that later messages
    pay first), so any size passes and the long-run rate is exact.
    """

    def __init__(
        self,
        rate_bps: float,
        burst_bytes: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        _check_rate(rate_bps)
        burst = default_burst_bytes(rate_bps) if burst_bytes is None else burst_bytes
        if burst <= 0:
            raise ValueError(f"burst {burst!r} bytes is not positive; expected > 0")
        self.rate_bps, self.burst_bytes = rate_bps, burst
        self._bytes_per_s = rate_bps / 8
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self._tokens = float(burst)  # starts full, like a fresh qdisc
        self._last = clock()

    def reserve(self, nbytes: int) -> float:
        """Take nbytes of credit now and return how long the caller must wait before sending."""
        if nbytes < 0:
            raise ValueError(f"message size {nbytes!r} bytes is negative; expected >= 0")
        with self._lock:
            now = self._clock()
            refill = max(0.0, now - self._last) * self._bytes_per_s
            self._tokens = min(float(self.burst_bytes), self._tokens + refill) - nbytes
            self._last = now
            return max(0.0, -self._tokens / self._bytes_per_s)

    def consume(self, nbytes: int) -> float:
        """Block until nbytes may be sent; returns the seconds waited (0.0 within the burst)."""
        wait = self.reserve(nbytes)
        if wait > 0:
            self._sleep(wait)
        return wait


def rate_from_env(environ: Mapping[str, str], name: str = UPLINK_RATE_ENV) -> float | None:
    """A rate in bit/s from the environment (default: the uplink to pace to), or None if unset."""
    raw = environ.get(name, "").strip()
    if not raw:
        return None
    try:
        rate = float(raw)
    except ValueError:
        raise ValueError(
            f"{name}={raw!r} is not a number; expected bit/s, e.g. 10000000"
        ) from None
    _check_rate(rate)
    return rate


@functools.cache
def process_uplink() -> TokenBucket | None:
    """This process's shared uplink bucket, from the environment (read once), or None."""
    rate = rate_from_env(os.environ)
    return None if rate is None else TokenBucket(rate)


LINK_RATE_ENV = "TESTBED_LINK_RATE_BPS"  # every backend sets it: the device's access-link rate
DEADLINE_MARGIN = 4.0  # a shaped link is shared with other transfers: allow 4x the bare time


@functools.cache
def link_rate_bps() -> float | None:
    """The configured rate of this process's device link (informational; None: unshaped)."""
    return rate_from_env(os.environ, LINK_RATE_ENV)


def transfer_deadline(base_s: float, nbytes: int, rate_bps: float | None = None) -> float:
    """An RPC deadline that grows with the payload on a slow link: base + margin * bits / rate.

    A 12.8 MB weight push needs 10 s on a 10 Mbit link before any queueing; a fixed deadline
    would fail it while the link is simply busy.
    """
    rate = link_rate_bps() if rate_bps is None else rate_bps
    if not rate:
        return base_s
    return base_s + DEADLINE_MARGIN * nbytes * 8 / rate
