"""The devices benchmark's scoring on literal block times: achieved speed = the reference's step
time over the class's (whole-window means, not per-block), error against the stated speed, the
+-10% band, and the CPU share per block."""

from __future__ import annotations

import pytest

from testbed.bench.devices import compare, cpu_share, step_time

STATED = {"desktop": 1.0, "tx2": 0.36, "tx1": 0.27}


def test_step_time_is_the_whole_window_mean() -> None:
    # a quota throttles in periods: one slow block must weigh by its time, not be a median
    assert step_time([1.0, 1.0, 4.0], 10) == pytest.approx(0.2)


def test_achieved_speed_is_reference_step_over_class_step_and_judged_against_stated() -> None:
    blocks = {
        "m": {
            "desktop": [1.0, 1.0],  # 0.1 s per step at 10 steps per block
            "tx2": [2.5, 3.0],  # 0.275 s: speed 0.364, +1.0% of 0.36
            "tx1": [3.0, 3.0],  # 0.3 s: speed 0.333, +23% of 0.27: outside the band
        }
    }
    got = compare(blocks, STATED, steps=10)
    tx2, tx1 = got["cells"]["m"]["tx2"], got["cells"]["m"]["tx1"]
    assert tx2["step_s"] == pytest.approx(0.275)
    assert tx2["achieved"] == pytest.approx(0.1 / 0.275)
    assert tx2["error"] == pytest.approx(0.1 / 0.275 / 0.36 - 1)
    assert tx2["within"] and tx2["block_range"] == pytest.approx([1.0 / 3.0, 1.0 / 2.5])
    assert tx1["achieved"] == pytest.approx(1 / 3) and not tx1["within"]
    assert got["classes"]["tx2"]["within"] and not got["classes"]["tx1"]["within"]
    assert got["classes"]["desktop"]["achieved_median"] == 1.0
    assert got["target_met"] is False


def test_a_class_too_slow_or_too_fast_misses_and_the_worst_error_keeps_its_sign() -> None:
    blocks = {
        "a": {"desktop": [1.0], "tx2": [1.0 / 0.36 / 0.85]},  # 15% slow
        "b": {"desktop": [1.0], "tx2": [1.0 / 0.36 / 1.05]},  # 5% fast
    }
    got = compare({m: {**b, "tx1": [1.0 / 0.27]} for m, b in blocks.items()}, STATED, steps=1)
    assert got["classes"]["tx2"]["worst_error"] == pytest.approx(-0.15)
    assert got["classes"]["tx2"]["achieved_median"] == pytest.approx(0.36 * (0.85 + 1.05) / 2)
    assert not got["classes"]["tx2"]["within"] and got["classes"]["tx1"]["within"]
    assert not got["target_met"]


def test_every_class_within_the_band_meets_the_target() -> None:
    blocks = {"m": {"desktop": [2.0], "tx2": [2.0 / 0.36 * 1.09], "tx1": [2.0 / 0.27 * 0.92]}}
    got = compare(blocks, STATED, steps=5)
    assert got["target_met"] is True
    assert compare(blocks, STATED, steps=5, tolerance=0.05)["target_met"] is False


def test_cpu_share_is_cpu_seconds_per_wall_second_of_the_blocks() -> None:
    raw = {"m": {"tx2": {"block_s": [2.0, 2.0], "block_cpu_s": [0.7, 0.74]}}}
    assert cpu_share(raw)["m"]["tx2"] == pytest.approx(0.36)
