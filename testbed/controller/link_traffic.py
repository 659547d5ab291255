"""Bytes on each emulated link per step, next to the link's configured rate (pure function)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

HOST = "host"  # where a worker without a device (the parameter server by default) runs

RateOf = Callable[[str, str], "int | None"]


def _sent(summary: dict[str, Any], peer: str) -> dict[str, float]:
    counts = summary.get("peers", {}).get(f"sent:{peer}", {})
    return {k: float(counts.get(k, 0)) for k in ("messages", "wire_bytes", "raw_bytes")}


def _row(
    src: tuple[str, str], dst: tuple[str, str], sent: dict[str, float], steps: int, rate: int | None
) -> dict[str, Any]:
    per_step = sent["wire_bytes"] / steps if steps else 0.0
    return {
        "src_worker": src[0],
        "src": src[1],
        "dst_worker": dst[0],
        "dst": dst[1],
        **sent,
        "wire_bytes_per_step": per_step,
        "configured_bps": rate,
        # the it/s this link alone allows: rate / bits per step
        "link_bound_it_s": rate / (8 * per_step) if rate and per_step else None,
    }


def link_traffic(
    trainers: list[tuple[str, str]],
    ps: tuple[str, str],
    workers: dict[str, dict[str, Any]],
    steps: int,
    rate_of: RateOf,
) -> list[dict[str, Any]]:
    """One row per direction of every used link: stage k -> k+1, k+1 -> k, the KT teacher ->
    each student worker, and worker -> PS.

    `trainers` are (worker, device) in stage order, `ps` is (worker, device or HOST),
    `workers` the workers' summaries (their per-peer byte counters), and `rate_of(a, b)`
    the configured rate of the path a -> b in bit/s (None when unshaped).
    """
    rows = []
    for (a, dev_a), (b, dev_b) in zip(trainers, trainers[1:]):
        down = _sent(workers.get(a, {}), "downstream")
        up = _sent(workers.get(b, {}), "upstream")
        if down["messages"] or up["messages"]:
            rows.append(_row((a, dev_a), (b, dev_b), down, steps, rate_of(dev_a, dev_b)))
            rows.append(_row((b, dev_b), (a, dev_a), up, steps, rate_of(dev_b, dev_a)))
    for a, dev_a in trainers:  # peers named after the receiving worker (the KT teacher's)
        for b, dev_b in trainers:
            sent = _sent(workers.get(a, {}), b)
            if sent["messages"]:
                rows.append(_row((a, dev_a), (b, dev_b), sent, steps, rate_of(dev_a, dev_b)))
    for name, dev in trainers:
        sent = _sent(workers.get(name, {}), "ps")
        if sent["messages"]:
            rows.append(_row((name, dev), ps, sent, steps, rate_of(dev, ps[1])))
    return rows


def bound_it_s(rows: list[dict[str, Any]]) -> float | None:
    """The tightest link bound over the stage links (None when no link is shaped)."""
    stage_links = [r for r in rows if r["dst_worker"] != "ps"]
    bounds = [r["link_bound_it_s"] for r in stage_links if r["link_bound_it_s"]]
    return min(bounds, default=None)
