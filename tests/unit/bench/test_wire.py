"""The wire benchmark's arithmetic: bytes per step per link and direction, ratios to fp32."""

import pytest

from testbed.bench import wire


def _workers(fwd: int, bwd: int, n: int = 3) -> dict:
    """n stage workers, each sending fwd bytes down and bwd bytes up (where it has a peer)."""
    out = {"ps": {"peers": {"received:stage0": {"wire_bytes": 99}}}}
    for i in range(n):
        peers = {"sent:ps": {"wire_bytes": 7, "messages": 1}}
        if i < n - 1:
            peers["sent:downstream"] = {"wire_bytes": fwd * (i + 1), "messages": 10}
        if i > 0:
            peers["sent:upstream"] = {"wire_bytes": bwd * i, "messages": 4}
        out[f"stage{i}"] = {"peers": peers}
    return out


def test_link_bytes_pairs_each_stage_with_the_next_and_ignores_the_ps() -> None:
    got = wire.link_bytes(_workers(100, 40), steps=10)
    assert [li["link"] for li in got["links"]] == ["stage0-stage1", "stage1-stage2"]
    assert [(li["forward"], li["backward"]) for li in got["links"]] == [(10, 4), (20, 8)]
    assert (got["forward"], got["backward"], got["total"]) == (30, 12, 42)
    assert got["links"][0]["backward_messages"] == 4


def test_stage_order_is_numeric_not_alphabetical() -> None:
    got = wire.link_bytes(_workers(1, 1, n=11), steps=1)
    assert got["links"][-1]["link"] == "stage9-stage10"


def test_ratios_are_fp32_over_each_setting() -> None:
    cells = {"fp32": {"forward": 400, "backward": 400, "total": 800},
             "int8/fp16": {"forward": 100, "backward": 200, "total": 300}}
    got = wire.ratios(cells)
    assert got["fp32"] == {"forward": 1, "backward": 1, "total": 1}
    assert got["int8/fp16"] == pytest.approx({"forward": 4, "backward": 2, "total": 8 / 3})
