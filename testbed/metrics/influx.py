"""InfluxDB sink: batches points off the caller's thread and spools them to disk during outages."""

from __future__ import annotations

import logging
import math
import numbers
import os
import queue
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from testbed.metrics.sink import Point, check_tags
from testbed.metrics.spool import Spool

log = logging.getLogger(__name__)

SPOOL_NAME = "influx-spool.lp"
REJECTED_NAME = "influx-rejected.lp"
_STOP = object()
_TAG_ESCAPE = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ "})


@dataclass(frozen=True)
class InfluxConfig:
    """Where to send points: an InfluxDB 2.x compatible /api/v2/write endpoint."""

    url: str
    token: str
    org: str
    bucket: str

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"influx url {self.url!r} must start with http:// or https://")
        for name in ("org", "bucket"):
            if not getattr(self, name):
                raise ValueError(f"influx {name} {getattr(self, name)!r} must be non-empty")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> InfluxConfig | None:
        """Read INFLUX_URL/INFLUX_TOKEN/INFLUX_ORG/INFLUX_BUCKET; None when INFLUX_URL is unset."""
        env = os.environ if env is None else env
        url = env.get("INFLUX_URL", "").strip()
        if not url:
            return None
        return cls(
            url=url,
            token=env.get("INFLUX_TOKEN", ""),
            org=env.get("INFLUX_ORG", "testbed"),
            bucket=env.get("INFLUX_BUCKET", "testbed"),
        )


def to_line(point: Point, base_tags: Mapping[str, str]) -> str:
    """One line of InfluxDB line protocol; point tags override base tags.

    Line protocol cannot carry NaN or infinity, so such fields are left out; a
    point with no finite field keeps its place as the single field `_nonfinite=1i`.
    """
    tags = {**base_tags, **point.tags}
    tag_part = "".join(f",{k}={tags[k].translate(_TAG_ESCAPE)}" for k in sorted(tags))
    fields = []
    for key in sorted(point.fields):
        value = point.fields[key]
        if isinstance(value, numbers.Integral):
            fields.append(f"{key}={int(value)}i")
        elif math.isfinite(value):
            fields.append(f"{key}={float(value)!r}")
    field_part = ",".join(fields) or "_nonfinite=1i"
    return f"{point.kind}{tag_part} {field_part} {point.time_ns}"


class Unavailable(Exception):
    """The server could not take the batch now; try again later."""


class Rejected(Exception):
    """The server refused the batch as malformed; retrying will not help."""


class LineWriter(Protocol):
    """Synchronous delivery of line-protocol batches (the network edge, fakeable in tests)."""

    def write(self, lines: list[str]) -> None:
        """Deliver lines or raise Unavailable / Rejected."""
        ...

    def ready(self) -> bool:
        """True when the server answers its health ping."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


class ClientWriter:
    """LineWriter over influxdb-client's synchronous write API (imported lazily: ~0.3 s)."""

    def __init__(self, config: InfluxConfig, timeout_s: float) -> None:
        from influxdb_client.client.influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS
        from influxdb_client.domain.write_precision import WritePrecision
        from influxdb_client.rest import ApiException
        from urllib3.exceptions import HTTPError

        self._config = config
        self._precision: Any = WritePrecision.NS  # the library types this str as WritePrecision
        self._api_error = ApiException
        self._net_errors = (HTTPError, OSError)
        self._client = InfluxDBClient(
            url=config.url, token=config.token, org=config.org, timeout=int(timeout_s * 1000)
        )
        self._api = self._client.write_api(write_options=SYNCHRONOUS)

    def write(self, lines: list[str]) -> None:
        try:
            self._api.write(
                bucket=self._config.bucket,
                org=self._config.org,
                record="\n".join(lines),
                write_precision=self._precision,
            )
        except self._api_error as e:
            if e.status in (400, 422):
                raise Rejected(f"HTTP {e.status}: {e.body!r}") from e
            raise Unavailable(f"HTTP {e.status}: {e.reason}") from e
        except self._net_errors as e:
            raise Unavailable(str(e)) from e

    def ready(self) -> bool:
        return bool(self._client.ping())

    def close(self) -> None:
        self._client.close()  # type: ignore[no-untyped-call]


class _Shipper:
    """Delivers batches in order: directly while the server is up, via the spool otherwise.

    Runs on the sink's background thread only. Order holds because new lines go
    straight to the server only while the spool is empty; otherwise they are
    appended behind the spooled ones, and the spool is drained front first.
    """

    def __init__(
        self, writer: LineWriter, run_dir: Path, batch_size: int, retry_s: tuple[float, float]
    ) -> None:
        self.writer = writer
        self.spool = Spool(run_dir / SPOOL_NAME)
        self.rejected_path = run_dir / REJECTED_NAME
        self.batch_size = batch_size
        self.retry_min, self.retry_max = retry_s
        self.delay = self.retry_min
        recovered = self.spool.pending()
        self.counts = dict.fromkeys(
            ("accepted", "written", "spooled", "flushed", "rejected", "pending"), 0
        )
        self.counts["recovered"] = recovered
        self.backlog = recovered > 0  # spool holds undelivered lines: go through it
        self.next_try = time.monotonic()

    def deliver(self, lines: list[str]) -> None:
        """Send new lines, or queue them behind the backlog."""
        self.counts["accepted"] += len(lines)
        if not self.backlog:
            try:
                self.writer.write(lines)
                self.counts["written"] += len(lines)
                return
            except Rejected as e:
                self._reject(lines, e)
                return
            except Unavailable as e:
                log.warning("influx unavailable, spooling to %s: %s", self.spool.path, e)
                self.backlog = True
                self._back_off()
        self.spool.append(lines)
        self.counts["spooled"] += len(lines)

    def drain(self, deadline: float | None = None) -> None:
        """If a retry is due and the server answers, flush the spool front first."""
        if not self.backlog or time.monotonic() < self.next_try:
            return
        if not self.writer.ready():
            self._back_off()
            return
        while deadline is None or time.monotonic() < deadline:
            batch = self.spool.read(self.batch_size)
            if not batch.lines:
                self.backlog = False
                self.delay = self.retry_min
                log.info("influx spool flushed; writing directly again")
                return
            try:
                self.writer.write(batch.lines)
                self.counts["flushed"] += len(batch.lines)
            except Rejected as e:
                self._reject(batch.lines, e)
            except Unavailable:
                self._back_off()
                return
            self.spool.commit(batch.end)

    def finish(self, deadline: float) -> dict[str, int]:
        """Keep flushing until the spool is empty or the deadline passes; return counts."""
        while self.backlog and time.monotonic() < deadline:
            self.drain(deadline)
            if self.backlog:
                time.sleep(max(0.0, min(self.next_try, deadline) - time.monotonic()))
        self.counts["pending"] = self.spool.pending()
        return dict(self.counts)

    def _back_off(self) -> None:
        self.next_try = time.monotonic() + self.delay
        self.delay = min(self.delay * 2, self.retry_max)

    def _reject(self, lines: list[str], error: Exception) -> None:
        log.error("influx rejected %d lines, kept in %s: %s", len(lines), self.rejected_path, error)
        Spool(self.rejected_path).append(lines)
        self.counts["rejected"] += len(lines)


class InfluxSink:
    """Sink that ships points to InfluxDB from a background thread; no point is lost.

    write() only enqueues (no I/O, never blocks). The thread batches points
    (batch_size, or whatever arrived within flush_interval_s) and writes each
    batch synchronously. While the server is unreachable, batches are appended
    to `<run_dir>/influx-spool.lp` (fsync per batch) and the thread pings the
    server with exponential backoff; once it answers, the spool is flushed
    front first and direct writes resume. A spool left by an earlier sink on
    the same run_dir is flushed first. close() returns counts satisfying
    written + flushed + rejected + pending == accepted + recovered.
    Delivery is at least once: a request that timed out after the server had
    stored it is sent again from the spool; InfluxDB keeps one point per
    series and timestamp, so the repeat overwrites rather than adds.

    Why not influxdb-client's batching WriteApi: its callbacks report a
    batch's fate only after its own retries give up, while later batches keep
    going out, so spooling from the error callback would reorder points; and
    its close() offers no deadline. One thread calling the synchronous API
    makes each batch's outcome, the order, and the close deadline explicit.
    """

    def __init__(
        self,
        url: str,
        token: str,
        org: str,
        bucket: str,
        run_dir: Path,
        base_tags: Mapping[str, str] | None = None,
        *,
        batch_size: int = 1000,
        flush_interval_s: float = 0.5,
        request_timeout_s: float = 5.0,
        retry_s: tuple[float, float] = (0.2, 5.0),
        writer: LineWriter | None = None,
    ) -> None:
        config = InfluxConfig(url, token, org, bucket)
        if batch_size < 1 or flush_interval_s <= 0 or request_timeout_s <= 0:
            raise ValueError(
                f"batch_size {batch_size!r}, flush_interval_s {flush_interval_s!r} and "
                f"request_timeout_s {request_timeout_s!r} must all be positive"
            )
        if not 0 < retry_s[0] <= retry_s[1]:
            raise ValueError(f"retry_s {retry_s!r} must be (min, max) with 0 < min <= max seconds")
        self._base_tags = dict(base_tags or {})
        check_tags(self._base_tags)
        self._writer: LineWriter = writer or ClientWriter(config, request_timeout_s)
        self._shipper = _Shipper(self._writer, Path(run_dir), batch_size, retry_s)
        self._batch_size = batch_size
        self._interval = flush_interval_s
        self._request_timeout = request_timeout_s
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed = False
        self._deadline = math.inf
        self._result: dict[str, int] | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="influx-sink", daemon=True)
        self._thread.start()

    @classmethod
    def from_config(
        cls,
        config: InfluxConfig,
        run_dir: Path,
        base_tags: Mapping[str, str] | None = None,
        **options: object,
    ) -> InfluxSink:
        """Build a sink from an InfluxConfig (e.g. InfluxConfig.from_env())."""
        return cls(
            config.url,
            config.token,
            config.org,
            config.bucket,
            run_dir,
            base_tags,
            **options,  # type: ignore[arg-type]
        )

    def write(self, point: Point) -> None:
        """Enqueue one point for the background thread; O(1), no I/O."""
        with self._lock:
            if self._closed:
                raise RuntimeError("InfluxSink.write() called after close()")
            self._queue.put(point)

    def __enter__(self) -> InfluxSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self, timeout_s: float = 10.0) -> dict[str, int]:
        """Flush within timeout_s; spool the rest; return counts (idempotent)."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._deadline = time.monotonic() + timeout_s
                self._queue.put(_STOP)
        # At most one ping and one write can still be in flight past the deadline.
        self._thread.join(timeout_s + 2 * self._request_timeout + 5.0)
        if self._thread.is_alive():
            raise RuntimeError(f"influx sink thread did not stop within {timeout_s} s of close()")
        if self._error is not None:
            raise RuntimeError(f"influx sink thread failed: {self._error!r}") from self._error
        assert self._result is not None
        return dict(self._result)

    def _run(self) -> None:
        try:
            stopping = False
            while not stopping:
                points, stopping = self._next_batch()
                if points:
                    base = self._base_tags
                    self._shipper.deliver([to_line(p, base) for p in points])
                self._shipper.drain(self._deadline if stopping else None)
            self._result = self._shipper.finish(self._deadline)
        except BaseException as e:  # surfaced by close(); the caller's thread must not die
            log.exception("influx sink thread failed")
            self._error = e
        finally:
            self._writer.close()

    def _next_batch(self) -> tuple[list[Point], bool]:
        """Up to batch_size points: those that arrive within flush_interval_s of the first."""
        points: list[Point] = []
        end = time.monotonic() + self._interval
        while len(points) < self._batch_size:
            try:
                item = self._queue.get(timeout=max(0.0, end - time.monotonic()))
            except queue.Empty:
                break
            if item is _STOP:
                return points, True
            points.append(item)  # type: ignore[arg-type]
        return points, False
