"""HTML pages: runs list, run view and compare view (server-rendered; charts load from the API)."""

from __future__ import annotations

import math
import time
from typing import Any

import yaml
from flask import Blueprint, Response, current_app, make_response, render_template, request

from testbed.dashboard.charts import RUN_CHARTS
from testbed.dashboard.state import state

bp = Blueprint("pages", __name__)
DEFAULT_POLL_MS = 2000


@bp.app_context_processor
def _common() -> dict[str, Any]:
    return {
        "mutations": bool(current_app.config.get("DASHBOARD_TOKEN")),
        "poll_ms": int(current_app.config.get("DASHBOARD_POLL_MS", DEFAULT_POLL_MS)),
    }


@bp.app_template_filter("num")
def num(value: Any, digits: int = 3) -> str:
    """A number with fixed decimals; an em dash for missing or non-finite values."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "—"
    return f"{value:,.{digits}f}" if digits == 0 else f"{value:.{digits}f}"


@bp.app_template_filter("tta")
def tta(entries: Any) -> str:
    """summary.json's time_to_accuracy compactly: '0.9 12 s · 0.95 30 s · 0.98 —'."""
    return tta_text(entries)


def tta_text(entries: Any) -> str:
    if not isinstance(entries, list) or not entries:
        return "—"
    parts = []
    for e in entries:
        if not isinstance(e, dict) or not isinstance(e.get("level"), (int, float)):
            continue
        t = e.get("train_s")
        parts.append(f"{e['level']:g} {num(t, 0) + ' s' if isinstance(t, (int, float)) else '—'}")
    return " · ".join(parts) or "—"


@bp.app_template_filter("started")
def started(run_id: Any) -> str:
    """When a run began, from its id ('2026-11-30 15:41')."""
    from testbed.metrics.run_dir import run_started

    return run_started(str(run_id)) or "—"


@bp.app_template_filter("clock")
def clock(epoch: Any) -> str:
    if not isinstance(epoch, (int, float)):
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


@bp.app_template_filter("columns")
def columns(rows: list[dict[str, Any]]) -> list[str]:
    """Union of the rows' keys, in first-seen order ('name' first)."""
    return list(dict.fromkeys(k for row in rows for k in row))


def chosen_runs() -> list[str]:
    """Run keys from ?runs=a,b and/or repeated ?runs=a&runs=b."""
    return [k.strip() for raw in request.args.getlist("runs") for k in raw.split(",") if k.strip()]


@bp.get("/")
def runs_page() -> str:
    st = state()
    return render_template(
        "runs.html", runs=st.store.list_runs(), experiments=st.jobs.experiments()
    )


@bp.get("/runs/<experiment>/<run>")
def run_page(experiment: str, run: str) -> Response:
    st = state()
    detail = st.store.outline(experiment, run)
    path = st.store.run_path(experiment, run)
    spec_text = yaml.safe_dump(detail["spec"], sort_keys=False) if detail["spec"] else ""
    job = st.jobs.job_for_run(path)
    html = render_template(
        "run.html",
        d=detail,
        info=detail["run"],
        spec_text=spec_text,
        stoppable=bool(job and job.alive),
        fixed=[(c.id, c.title) for c in RUN_CHARTS],
    )
    response = make_response(html)
    # parse once the page is sent, overlapping with the browser loading it; its charts request waits
    response.call_on_close(lambda: st.store.prefetch(path))
    return response


def bp_sg_pairs(experiments: set[str]) -> list[str]:
    """Experiments X with both X-bp and X-sg runs: the BP-vs-SG comparisons worth a shortcut."""
    bases = (e.removesuffix("-bp") for e in experiments if e.endswith("-bp"))
    return sorted(b for b in bases if f"{b}-sg" in experiments)


@bp.get("/compare")
def compare_page() -> str:
    runs = state().store.list_runs()
    latest: dict[str, str] = {}
    for r in runs:  # newest first
        latest.setdefault(r["experiment"], r["key"])
    chosen = [c if "/" in c else latest.get(c, c) for c in chosen_runs()]
    presets = bp_sg_pairs(set(latest))
    return render_template("compare.html", runs=runs, chosen=chosen, presets=presets)
