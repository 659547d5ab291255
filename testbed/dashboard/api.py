"""The JSON API: runs, one run, its metrics (incremental) and charts, compare, start and stop."""

from __future__ import annotations

import hashlib
from typing import Any

from flask import Blueprint, Response, jsonify, request

from testbed.dashboard.auth import require_token
from testbed.dashboard.charts import compare_charts, run_charts
from testbed.dashboard.jobs import Job, JobRefused
from testbed.dashboard.paths import BadName, check_name
from testbed.dashboard.specdiff import spec_diff
from testbed.dashboard.state import state
from testbed.dashboard.store import RunNotFound, metrics_overview

bp = Blueprint("api", __name__, url_prefix="/api")
MAX_COMPARE = 12


def int_arg(name: str, default: int, lo: int, hi: int) -> int:
    """An integer query parameter within [lo, hi]; BadName (a 400) otherwise."""
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadName(f"query parameter {name}={raw!r} is not an integer") from None
    if not lo <= value <= hi:
        raise BadName(f"query parameter {name}={value} is out of range; expected {lo}..{hi}")
    return value


@bp.get("/runs")
def runs() -> Any:
    return {"runs": state().store.list_runs()}


@bp.get("/runs/<experiment>/<run>")
def run_detail(experiment: str, run: str) -> Any:
    st = state()
    detail = st.store.detail(experiment, run)
    job = st.jobs.job_for_run(st.store.run_path(experiment, run))
    return {**detail, "job": job.to_json() if job else None}


@bp.get("/runs/<experiment>/<run>/metrics")
def run_metrics(experiment: str, run: str) -> Any:
    """Raw records from line `since` on (optionally of one kind); pass `next` back to continue."""
    kind = request.args.get("kind")
    if kind is not None:
        check_name("kind", kind)
    since = int_arg("since", 0, 0, 10**12)
    limit = int_arg("limit", 10_000, 1, 100_000)
    store = state().store
    metrics = store.run_metrics(store.run_path(experiment, run))
    records, nxt = metrics.records_since(since, kind, limit)
    return {
        "experiment": experiment,
        "run": run,
        "kind": kind,
        "since": since,
        "next": nxt,
        "lines": metrics.lines,
        "truncated": len(records) == limit and nxt < metrics.lines,
        "records": records,
    }


@bp.get("/runs/<experiment>/<run>/charts")
def run_chart_data(experiment: str, run: str) -> Any:
    """Downsampled chart series; 304 when the client's If-None-Match is still current."""
    points = int_arg("points", 600, 10, 5000)
    store = state().store
    path = store.run_path(experiment, run)
    metrics = store.run_metrics(path)
    info = store.info(experiment, run, path)
    tag = hashlib.sha1(repr((metrics.ident, info["status"], points)).encode()).hexdigest()[:16]
    if tag in request.if_none_match:
        return Response(status=304, headers={"ETag": f'"{tag}"'})
    resp = jsonify(
        version=tag, run=info, **metrics_overview(metrics), charts=run_charts(metrics, points)
    )
    resp.set_etag(tag)
    return resp


def _compare_keys(raw: str) -> list[tuple[str, str | None]]:
    """'exp/run,exp' -> [(exp, run), (exp, None)]; None means the experiment's latest run."""
    keys: list[tuple[str, str | None]] = []
    for item in filter(None, (s.strip() for s in raw.split(","))):
        parts = item.split("/")
        if len(parts) > 2:
            raise BadName(f"run {item!r}: expected 'experiment/run-id' or 'experiment'")
        keys.append(
            (
                check_name("experiment", parts[0]),
                check_name("run", parts[1]) if len(parts) == 2 else None,
            )
        )
    if not keys or len(keys) > MAX_COMPARE:
        raise BadName(f"runs={raw!r}: expected 1-{MAX_COMPARE} comma-separated 'experiment/run-id'")
    return keys


@bp.get("/compare")
def compare() -> Any:
    """Several runs side by side: list rows, accuracy, throughput and loss charts (a line per
    run), and the spec fields that differ."""
    store = state().store
    points = int_arg("points", 600, 10, 5000)
    refs = store.refs()
    chosen = []
    for exp, run in _compare_keys(",".join(request.args.getlist("runs"))):
        if run is None:
            run = next((r for e, r, _ in refs if e == exp), None)
            if run is None:
                raise RunNotFound(f"no runs of experiment {exp!r}")
        chosen.append((exp, run, store.run_path(exp, run)))
    infos = [store.info(e, r, p) for e, r, p in chosen]
    series = [(f"{e}/{r}", store.run_metrics(p)) for e, r, p in chosen]
    diff = spec_diff([store.spec(p) for _, _, p in chosen])
    return {"runs": infos, "charts": compare_charts(series, points), "spec_diff": diff}


@bp.get("/experiments")
def experiments() -> Any:
    return {"experiments": state().jobs.experiments()}


@bp.post("/experiments/<name>/start")
@require_token
def start(name: str) -> Any:
    """Start `testbed run NAME` (scale from the JSON body or ?scale=); 202 with the job."""
    body = request.get_json(silent=True) or {}
    scale = body.get("scale") if isinstance(body, dict) else None
    scale = scale or request.args.get("scale") or None
    if scale is not None and not isinstance(scale, str):
        raise BadName(f"scale {scale!r} must be a string")
    job = state().jobs.start(name, scale)
    return jsonify(job=job.to_json()), 202, {"Location": f"/api/jobs/{job.id}"}


@bp.post("/runs/<experiment>/<run>/stop")
@require_token
def stop_run(experiment: str, run: str) -> Any:
    """SIGINT the run's process (only runs started here); the run records 'interrupted'."""
    st = state()
    job = st.jobs.job_for_run(st.store.run_path(experiment, run))
    if job is None:
        raise JobRefused(
            409, f"{experiment}/{run} was not started by this dashboard; stop it where it runs"
        )
    return _stop(job)


@bp.get("/jobs")
def jobs() -> Any:
    return {"jobs": [j.to_json() for j in state().jobs.jobs()]}


@bp.get("/jobs/<job_id>")
def job(job_id: str) -> Any:
    found = state().jobs.get(job_id)
    if found is None:
        raise RunNotFound(f"no job {job_id!r}")
    return {"job": found.to_json()}


@bp.post("/jobs/<job_id>/stop")
@require_token
def stop_job(job_id: str) -> Any:
    found = state().jobs.get(job_id)
    if found is None:
        raise RunNotFound(f"no job {job_id!r}")
    return _stop(found)


def _stop(job: Job) -> Any:
    if not job.alive:
        raise JobRefused(409, f"job {job.id} has already exited (code {job.proc.returncode})")
    state().jobs.stop(job)
    return jsonify(job=job.to_json()), 202


def error_json(status: int, message: str) -> Response:
    resp = jsonify(error=message)
    resp.status_code = status
    return resp
