"""Tests for the InfluxDB sink, its spool, and a real VictoriaMetrics round trip."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from testbed.metrics.influx import (
    SPOOL_NAME,
    ClientWriter,
    InfluxConfig,
    InfluxSink,
    LineWriter,
    Rejected,
    Unavailable,
    to_line,
)
from testbed.metrics.sink import Point, Sink
from testbed.metrics.spool import Spool
from testbed.testing.victoria import Victoria

# Recent whole second in ns (VictoriaMetrics drops points older than its retention, and
# keeps ms precision: test points are 1 ms apart).
T0 = time.time_ns() // 1_000_000_000 * 1_000_000_000 - 60 * 1_000_000_000


def fast_sink(
    url: str,
    run_dir: Path,
    base_tags: dict[str, str],
    writer: LineWriter | None = None,
    batch_size: int = 1000,
    flush_interval_s: float = 0.05,
) -> InfluxSink:
    """A sink with short intervals and backoff, so outage tests finish fast."""
    return InfluxSink(
        url,
        "tok",
        "org",
        "bucket",
        run_dir,
        base_tags,
        batch_size=batch_size,
        flush_interval_s=flush_interval_s,
        request_timeout_s=2.0,
        retry_s=(0.02, 0.1),
        writer=writer,
    )


def seq_point(i: int, **tags: str) -> Point:
    return Point("train", {"seq": i, "loss": 1.0 / (i + 1)}, dict(tags), T0 + i * 1_000_000)


def seq_of(line: str) -> int:
    return int(line.split("seq=")[1].split("i")[0])


def identity_holds(c: dict[str, int]) -> bool:
    return c["written"] + c["flushed"] + c["rejected"] + c["pending"] == (
        c["accepted"] + c["recovered"]
    )


# --- spool, no server -------------------------------------------------------


def test_spool_reads_in_append_order_and_commits_durably(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.lp")
    spool.append(["a 1", "b 2"])
    spool.append(["c 3"])
    first = spool.read(2)
    assert first.lines == ["a 1", "b 2"]
    spool.commit(first.end)
    reopened = Spool(tmp_path / "s.lp")
    assert reopened.pending() == 1
    assert reopened.read(10).lines == ["c 3"]
    assert (tmp_path / "s.lp").read_text() == "a 1\nb 2\nc 3\n"  # append-only


def test_spool_drops_partial_tail_and_rejects_bad_input(tmp_path: Path) -> None:
    path = tmp_path / "s.lp"
    path.write_bytes(b"a 1\nb 2\nhalf-writ")
    spool = Spool(path)
    assert spool.read(10).lines == ["a 1", "b 2"]
    with pytest.raises(ValueError, match="no newline"):
        spool.append(["x\ny"])
    with pytest.raises(ValueError, match="only move forward"):
        spool.commit(path.stat().st_size + 1)
    (tmp_path / "s.lp.offset").write_text("junk")
    with pytest.raises(ValueError, match="'junk'"):
        Spool(path)


# --- encoding and config ----------------------------------------------------


def test_to_line_merges_tags_escapes_and_types_fields() -> None:
    p = Point("link", {"mbps": 2.5, "bytes": 10, "nan": float("nan")}, {"link": "w0 w1"}, 7)
    line = to_line(p, {"run": "r=1", "link": "base"})
    assert line == r"link,link=w0\ w1,run=r\=1 bytes=10i,mbps=2.5 7"
    assert to_line(Point("x", {"v": float("inf")}, {}, 1), {}) == "x _nonfinite=1i 1"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "bad kind"}, "kind 'bad kind'"),
        ({"fields": {}}, "non-empty dict"),
        ({"fields": {"ok": True}}, "bool is not"),
        ({"tags": {"stage": ""}}, "tag 'stage'"),
        ({"time_ns": -1}, "time_ns -1"),
    ],
)
def test_point_rejects_bad_values_naming_them(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"kind": "train", "fields": {"loss": 1.0}, "tags": {}, "time_ns": 1}
    with pytest.raises(ValueError, match=message):
        Point(**{**args, **kwargs})  # type: ignore[arg-type]


def test_config_from_env() -> None:
    assert InfluxConfig.from_env({}) is None
    cfg = InfluxConfig.from_env({"INFLUX_URL": "http://127.0.0.1:1", "INFLUX_BUCKET": "b"})
    assert cfg == InfluxConfig("http://127.0.0.1:1", "", "testbed", "b")
    with pytest.raises(ValueError, match=r"'127\.0\.0\.1:1'"):
        InfluxConfig.from_env({"INFLUX_URL": "127.0.0.1:1"})


# --- sink logic against a fake server ---------------------------------------


class FakeWriter:
    """Records delivered lines; 'up' toggles availability; can reject one marker."""

    def __init__(self) -> None:
        self.up = threading.Event()
        self.up.set()
        self.delivered: list[str] = []
        self.requests = 0

    def write(self, lines: list[str]) -> None:
        self.requests += 1
        if not self.up.is_set():
            raise Unavailable("fake server down")
        if any("poison" in line for line in lines):
            raise Rejected("fake 400")
        self.delivered.extend(lines)

    def ready(self) -> bool:
        return self.up.is_set()

    def close(self) -> None:
        pass


def make_sink(
    tmp_path: Path, writer: LineWriter, batch_size: int = 1000, flush_interval_s: float = 0.05
) -> InfluxSink:
    """A fast sink whose network edge is the given fake (port 9 is never contacted)."""
    return fast_sink(
        "http://127.0.0.1:9", tmp_path, {"run": "r"}, writer, batch_size, flush_interval_s
    )


def wait_until(predicate: object, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached before the deadline"
        time.sleep(0.005)  # poll interval


def test_outage_spools_then_flushes_in_order(tmp_path: Path) -> None:
    fake = FakeWriter()
    sink = make_sink(tmp_path, fake)
    assert isinstance(sink, Sink)
    for i in range(100):
        sink.write(seq_point(i))
    wait_until(lambda: len(fake.delivered) == 100)
    fake.up.clear()
    for i in range(100, 200):
        sink.write(seq_point(i))
    wait_until(lambda: (tmp_path / SPOOL_NAME).stat().st_size > 0)
    fake.up.set()
    for i in range(200, 300):
        sink.write(seq_point(i))
    counts = sink.close()
    assert [seq_of(line) for line in fake.delivered] == list(range(300))
    assert counts["written"] > 0 and counts["spooled"] > 0 and counts["pending"] == 0
    assert counts["written"] + counts["flushed"] == 300
    assert identity_holds(counts)


def test_close_deadline_leaves_pending_for_a_later_sink(tmp_path: Path) -> None:
    fake = FakeWriter()
    fake.up.clear()
    sink = make_sink(tmp_path, fake)
    for i in range(50):
        sink.write(seq_point(i))
    counts = sink.close(timeout_s=0.2)
    assert counts == {
        "accepted": 50,
        "written": 0,
        "spooled": 50,
        "flushed": 0,
        "rejected": 0,
        "pending": 50,
        "recovered": 0,
    }
    with pytest.raises(RuntimeError, match="after close"):
        sink.write(seq_point(99))
    fake.up.set()
    later = make_sink(tmp_path, fake)
    later.write(seq_point(50))
    counts = later.close()
    assert [seq_of(line) for line in fake.delivered] == list(range(51))
    assert counts["recovered"] == 50 and counts["spooled"] == 1  # queued behind the backlog
    assert counts["flushed"] == 51 and counts["pending"] == 0
    assert identity_holds(counts)


def test_rejected_batch_is_kept_aside_and_counted(tmp_path: Path) -> None:
    fake = FakeWriter()
    sink = make_sink(tmp_path, fake, batch_size=1)
    sink.write(seq_point(0))
    sink.write(Point("poison", {"v": 1}, {}, 5))
    sink.write(seq_point(1))
    counts = sink.close()
    assert counts["rejected"] == 1 and counts["written"] == 2 and identity_holds(counts)
    assert "poison" in (tmp_path / "influx-rejected.lp").read_text()


def test_batches_fewer_requests_than_points(tmp_path: Path) -> None:
    fake = FakeWriter()
    sink = make_sink(tmp_path, fake, batch_size=100, flush_interval_s=0.5)
    for i in range(300):
        sink.write(seq_point(i))
    counts = sink.close()
    assert counts["written"] == 300
    assert 3 <= fake.requests <= 6


# --- real server -------------------------------------------------------------


class RecordingWriter:
    """The real client writer, recording the order of acknowledged lines."""

    def __init__(self, inner: ClientWriter) -> None:
        self.inner = inner
        self.acked: list[str] = []

    def write(self, lines: list[str]) -> None:
        self.inner.write(lines)
        self.acked.extend(lines)

    def ready(self) -> bool:
        return self.inner.ready()

    def close(self) -> None:
        self.inner.close()


@pytest.mark.integration
def test_points_round_trip_with_tags(victoria: Victoria, tmp_path: Path) -> None:
    base = {"run": "r1", "experiment": "mnist", "mode": "sg"}
    sink = fast_sink(victoria.url, tmp_path / "run", base)
    sink.write(Point("train", {"loss": 0.5, "step": 3}, {"stage": "1", "device": "rpi4"}, T0))
    sink.write(Point("eval", {"acc": 0.9}, {"stage": "0"}, T0 + 1_000_000))
    counts = sink.close()
    assert counts["written"] == 2 and counts["pending"] == 0
    loss = victoria.wait_samples("train", "loss", 1)
    assert loss == [(T0 // 1_000_000, 0.5, {**base, "stage": "1", "device": "rpi4"})]
    assert [s[1] for s in victoria.wait_samples("train", "step", 1)] == [3.0]
    assert victoria.wait_samples("eval", "acc", 1) == [
        (T0 // 1_000_000 + 1, 0.9, {**base, "stage": "0"})
    ]


@pytest.mark.integration
def test_outage_with_real_server_loses_nothing(victoria: Victoria, tmp_path: Path) -> None:
    n, run = 600, tmp_path / "run"
    writer = RecordingWriter(ClientWriter(InfluxConfig(victoria.url, "", "o", "b"), 2.0))
    sink = fast_sink(victoria.url, run, {"run": "r2"}, writer, batch_size=50)
    for i in range(200):
        sink.write(seq_point(i))
    wait_until(lambda: len(writer.acked) == 200)
    victoria.stop()
    for i in range(200, 400):
        sink.write(seq_point(i))
    wait_until(lambda: (run / SPOOL_NAME).stat().st_size > 0)
    victoria.start()
    for i in range(400, n):
        sink.write(seq_point(i))
    counts = sink.close(timeout_s=20)
    assert counts["written"] >= 200 and counts["spooled"] > 0
    assert counts["written"] + counts["flushed"] == n and counts["pending"] == 0
    assert identity_holds(counts)
    assert [seq_of(line) for line in writer.acked] == list(range(n))
    spooled = [seq_of(line) for line in (run / SPOOL_NAME).read_text().splitlines()]
    assert spooled == list(range(spooled[0], spooled[0] + counts["spooled"]))
    got = victoria.wait_samples("train", "seq", n)
    assert sorted(int(s[1]) for s in got) == list(range(n))


@pytest.mark.integration
def test_writes_are_batched_on_the_wire(victoria: Victoria, tmp_path: Path) -> None:
    sink = fast_sink(victoria.url, tmp_path / "run", {"run": "r3"}, None, 100, 0.5)
    for i in range(300):
        sink.write(seq_point(i))
    assert sink.close()["written"] == 300
    requests = victoria.counter("vm_http_requests_total", '"/influx/write"')  # fresh server
    assert 3 <= requests <= 6
    assert len(victoria.wait_samples("train", "seq", 300)) == 300
