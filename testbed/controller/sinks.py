"""A run's extra metric sinks: the InfluxDB sink from the spec or the environment, and its counts."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

from testbed.metrics.influx import InfluxConfig, InfluxSink
from testbed.metrics.run_dir import RunDir
from testbed.metrics.sink import Point
from testbed.spec.experiment import Spec
from testbed.training.loop import Recorder

log = logging.getLogger(__name__)

# Every point sent to InfluxDB carries these tags; a point's own tags (a worker's stage,
# device or link) override the defaults, which mark a point as not specific to one.
DEFAULT_TAGS = {"device": "controller", "stage": "all", "link": "none"}
COUNT_KEYS = ("written", "spooled", "flushed", "pending", "rejected", "accepted", "recovered")


def influx_config(spec: Spec) -> InfluxConfig | None:
    """The spec's metrics.influx, else INFLUX_URL/... from the environment, else None."""
    cfg = spec.metrics.influx
    if cfg is None:
        return InfluxConfig.from_env()
    env = InfluxConfig.from_env()
    token = cfg.token or (env.token if env else "")
    return InfluxConfig(cfg.url, token, cfg.org, cfg.bucket)


def point_tags(spec: Spec, run: RunDir) -> dict[str, str]:
    """The tags every point of this run carries in the run directory."""
    return {"run": run.run_id, "experiment": spec.name, "mode": spec.job.mode}


def run_tags(spec: Spec, run: RunDir) -> dict[str, str]:
    """The tags every point of this run carries in InfluxDB."""
    return {**point_tags(spec, run), **DEFAULT_TAGS}


@contextlib.contextmanager
def recording(spec: Spec, run: RunDir) -> Iterator[tuple[Recorder, dict[str, Any]]]:
    """A recorder to the run directory (and InfluxDB when configured); the dict it yields holds
    {"influx": counts} once the block exits (the sink is closed also on error)."""
    influx = open_influx(spec, run)
    with closing_influx(influx, run) as counts:
        yield Recorder(run, point_tags(spec, run), [influx] if influx else None), counts


def open_influx(spec: Spec, run: RunDir, **options: Any) -> InfluxSink | None:
    """An InfluxSink writing this run's points (spooling into the run dir), or None if unconfigured."""
    config = influx_config(spec)
    if config is None:
        return None
    run.event("influx_sink", url=config.url, org=config.org, bucket=config.bucket)
    return InfluxSink.from_config(config, run.path, run_tags(spec, run), **options)


def influx_writer(sink: InfluxSink | None) -> Callable[[Point], None] | None:
    """sink.write with device/link tags derived from worker points (None when no sink)."""
    if sink is None:
        return None
    return lambda point: sink.write(with_topology_tags(point))


def close_influx(sink: InfluxSink | None, run: RunDir) -> dict[str, Any]:
    """Close the sink and return the summary entry {"influx": counts} ({} when no sink)."""
    if sink is None:
        return {}
    try:
        counts = sink.close()
    except RuntimeError as err:  # the run's own results stay valid: record, do not fail the run
        log.error("influx sink did not close cleanly: %s", err)
        run.event("influx_error", reason=str(err))
        return {"influx": {"error": str(err)}}
    return {"influx": {k: counts.get(k, 0) for k in COUNT_KEYS}}


def with_topology_tags(point: Point) -> Point:
    """The point with `device` from its worker tag and `link` from worker->peer, where present."""
    tags, extra = point.tags, {}
    if "worker" in tags and "device" not in tags:
        extra["device"] = tags["worker"]
    if "peer" in tags and "link" not in tags:
        extra["link"] = f"{tags.get('worker', 'controller')}->{tags['peer']}"
    if not extra:
        return point
    return Point(point.kind, point.fields, {**tags, **extra}, point.time_ns)


def fan_out(*writers: Callable[[Point], None] | None) -> Callable[[Point], None]:
    """One write function that hands each point to every given writer, in order."""
    targets = [w for w in writers if w is not None]

    def write(point: Point) -> None:
        for w in targets:
            w(point)

    return write


@contextlib.contextmanager
def closing_influx(sink: InfluxSink | None, run: RunDir) -> Iterator[dict[str, Any]]:
    """Yield a dict that holds {"influx": counts} once the block exits (sink closed also on error)."""
    counts: dict[str, Any] = {}
    try:
        yield counts
    finally:
        counts.update(close_influx(sink, run))
