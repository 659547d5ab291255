"""The transport benchmark's machinery: real client and server processes, the server's CPU read
from its own nanosecond clocks over exactly the timed messages, medians over repeats."""

import pytest

from testbed.bench import transport


@pytest.mark.parametrize("variant", ["worker", "raw-grpc"])
def test_one_cell_reads_both_ends_cpu(variant: str) -> None:
    n = 60
    r = transport.measure((16, 784), variant, n)
    assert r["messages"] == n and r["bytes"] == 16 * 784 * 4
    assert r["client_cpu_ms"] > 0 and r["server_cpu_ms"] > 0 and r["wall_ms"] > 0
    # with 10 ms clock ticks, 60 messages could only show multiples of 1/6 ms
    assert r["server_cpu_ms"] * n / 10 != pytest.approx(round(r["server_cpu_ms"] * n / 10), abs=1e-6)
    assert r["server_thread_cpu_ms"], "the server's per-thread CPU is broken down"
    assert sum(r["server_thread_cpu_ms"].values()) <= r["server_cpu_ms"] * 1.05


def test_cell_stats_take_the_median_and_range_of_the_repeats() -> None:
    runs = [{"client_cpu_ms": c, "server_cpu_ms": s, "wall_ms": w, "bytes": 8, "messages": 5,
             "message_bytes": 9, "server_thread_cpu_ms": {"grpc": s}}
            for c, s, w in ((1.0, 4.0, 9.0), (3.0, 2.0, 7.0), (2.0, 3.0, 8.0))]  # fmt: skip
    got = transport.cell_stats(runs)
    assert (got["client_cpu_ms"], got["server_cpu_ms"], got["wall_ms"]) == (2.0, 3.0, 8.0)
    assert got["range"]["server_cpu_ms"] == [2.0, 4.0] and got["repeats"] == 3


def test_a_codec_cell_sends_its_codes_and_the_server_decodes_them() -> None:
    r = transport.measure((16, 14, 14, 32), "int8-channel", 40)
    assert r["messages"] == 40 and r["bytes"] == 16 * 14 * 14 * 32 * 4
    assert r["bytes"] / 4.0 < r["message_bytes"] < r["bytes"] / 3.95  # int8 codes + 32 scales
    assert r["client_cpu_ms"] > 0 and r["server_cpu_ms"] > 0


def test_codec_only_cpu_is_read_per_message_on_this_thread() -> None:
    fp32 = transport.codec_cpu((16, 784), "worker", 50)
    fp16 = transport.codec_cpu((16, 784), "fp16", 50)
    assert fp32["encode_cpu_ms"] > 0 and fp16["decode_cpu_ms"] > 0
    assert fp16["message_bytes"] < 0.51 * fp32["message_bytes"]
