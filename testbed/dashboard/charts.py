"""Chart data: the series a run's metrics make (fixed charts plus one per extra kind and field)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from testbed.dashboard.downsample import downsample
from testbed.dashboard.metrics_store import RunMetrics, Table

AXIS_FIELDS = ("step", "wall_s", "t")
X_LABELS = {"step": "step", "wall_s": "wall time (s)", "t": "time since first record (s)"}
FIXED_KINDS = ("train", "eval")
Chart = dict[str, Any]


@dataclass(frozen=True)
class SeriesDef:
    """One line of a chart: a field of a kind, labelled."""

    kind: str
    field: str
    label: str


@dataclass(frozen=True)
class ChartDef:
    """A chart: id, title, x field, y label and its lines."""

    id: str
    title: str
    x: str
    y_label: str
    series: tuple[SeriesDef, ...]


RUN_CHARTS = (
    ChartDef(
        "accuracy-step",
        "Test accuracy vs step",
        "step",
        "accuracy",
        (SeriesDef("eval", "test_acc", "test accuracy"),),
    ),
    ChartDef(
        "accuracy-time",
        "Test accuracy vs wall time",
        "wall_s",
        "accuracy",
        (SeriesDef("eval", "test_acc", "test accuracy"),),
    ),
    ChartDef("throughput", "Throughput", "step", "it/s", (SeriesDef("train", "it_s", "it/s"),)),
    ChartDef(
        "loss",
        "Training loss",
        "step",
        "loss",
        (SeriesDef("train", "loss", "loss"), SeriesDef("train", "sg_loss", "SG loss")),
    ),
)
COMPARE_CHARTS = (
    *RUN_CHARTS[:3],
    ChartDef("loss", "Training loss", "step", "loss", (SeriesDef("train", "loss", "loss"),)),
)
LOG_Y = ("loss",)  # charts drawn on a log scale first: an SG loss of ~15 at the start flattens them


def table_xy(
    table: Table, x: str, y: str, t0: float | None
) -> tuple[np.ndarray, np.ndarray] | None:
    """x and y columns of a table (x 't' counted from t0), or None if it lacks either."""
    xs, ys = table.column(x), table.column(y)
    if xs is None or ys is None:
        return None
    if x == "t" and t0 is not None:
        xs = xs - t0
    return xs, ys


def series_json(name: str, x: np.ndarray, y: np.ndarray, max_points: int) -> dict[str, Any]:
    total = int(np.count_nonzero(np.isfinite(x) & np.isfinite(y)))
    dx, dy = downsample(x, y, max_points)
    return {"name": name, "x": dx.tolist(), "y": dy.tolist(), "total": total}


def _drop_flat_zero(series: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Leave out all-zero lines (e.g. SG loss of a BP run) when the chart has another line."""
    live = [s for s in series if any(v != 0 for v in s["y"])]
    return live if live else series


def chart_json(cdef: ChartDef, series: list[dict[str, Any]]) -> Chart:
    series = _drop_flat_zero([s for s in series if s["total"]])
    return {
        "id": cdef.id,
        "title": cdef.title,
        "x_label": X_LABELS.get(cdef.x, cdef.x),
        "y_label": cdef.y_label,
        "series": series,
        "points": sum(len(s["x"]) for s in series),
        "log_y": cdef.id in LOG_Y,
    }


def first_t(metrics: RunMetrics) -> float | None:
    """The earliest 't' in the run (the zero of 't' axes)."""
    starts = [
        float(np.nanmin(c))
        for t in metrics.tables.values()
        if (c := t.column("t")) is not None and np.isfinite(c).any()
    ]
    return min(starts) if starts else None


def fixed_chart(
    metrics: RunMetrics, cdef: ChartDef, max_points: int, label: str | None = None
) -> Chart:
    series = []
    for sdef in cdef.series:
        for table in metrics.tables_of(sdef.kind):
            xy = table_xy(table, cdef.x, sdef.field, None)
            if xy is not None:
                name = label or (
                    sdef.label if table.label == sdef.kind else f"{sdef.label} {table.label}"
                )
                series.append(series_json(name, *xy, max_points))
    return chart_json(cdef, series)


def pick_x(tables: list[Table]) -> str:
    """The x field every table of a kind has: step, else wall_s, else t."""
    for x in AXIS_FIELDS:
        if all(x in t.cols for t in tables):
            return x
    return "t"


def extra_charts(metrics: RunMetrics, max_points: int) -> list[Chart]:
    """One chart per field of every kind beyond train/eval, one line per tag set (device, link)."""
    charts: list[Chart] = []
    t0 = first_t(metrics)
    kinds = [k for k in metrics.kinds() if k not in FIXED_KINDS]
    for kind in kinds:
        tables = metrics.tables_of(kind)
        x = pick_x(tables)
        fields = list(dict.fromkeys(f for t in tables for f in t.cols if f not in AXIS_FIELDS))
        for name in fields:
            cdef = ChartDef(f"{kind}-{name}", f"{kind}: {name}", x, name, ())
            series = [
                series_json(t.label, *xy, max_points)
                for t in tables
                if (xy := table_xy(t, x, name, t0)) is not None
            ]
            charts.append(chart_json(cdef, series))
    return charts


def run_charts(metrics: RunMetrics, max_points: int) -> list[Chart]:
    """Every chart a run has data for (memoised until its metrics file changes)."""
    with metrics.lock:
        key = ("charts", max_points)
        if key not in metrics.memo:
            charts = [fixed_chart(metrics, c, max_points) for c in RUN_CHARTS]
            charts += extra_charts(metrics, max_points)
            metrics.memo[key] = [c for c in charts if c["points"]]
        cached: list[Chart] = metrics.memo[key]
        return cached


def compare_charts(runs: list[tuple[str, RunMetrics]], max_points: int) -> list[Chart]:
    """Accuracy, throughput and loss charts with one line per run."""
    charts = []
    for cdef in COMPARE_CHARTS:
        series = []
        for label, metrics in runs:
            with metrics.lock:
                series += fixed_chart(metrics, cdef, max_points, label)["series"]
        charts.append(chart_json(cdef, series))
    return charts
