"""Privileged tier: `testbed run` of a spec with a `planner:` block, end to end (issue 14).

Two device classes (the desktop and a Jetson TX2) over 100 Mbit links: the run probes the links,
profiles each device in a one-device dp-async run, ranks the 3 configurations, trains the
remaining steps on the pick and records prediction beside measurement and the overhead in
`summary.planner`. For `prefer: energy` the pick is not close: the TX2 alone draws at most 15 W
at about 0.36 of the desktop's speed, so it needs well under half the energy of anything with the
desktop (45 W idle, 170 W busy); a ranking by anything else, or a summary that copied the
prediction into the measurement, fails below.
"""

from __future__ import annotations

import json
import math
import os
import traceback
from pathlib import Path

import pytest

from testbed.cli import app
from testbed.emulation.cleanup import find
from testbed.metrics.run_dir import read_summary

pytestmark = [
    pytest.mark.privileged,
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces, cgroups)"),
]

WINDOWS = {"warmup_steps": 2, "time_steps": 6, "power_steps": 2}
ITERATIONS = 40
REMAINING = ITERATIONS - sum(WINDOWS.values())


def _spec(path: Path) -> Path:
    raw = {
        "name": "planned",
        "model": {"name": "four-layer", "width": 0.25},
        "algorithm": {"name": "bp"},
        "training": {"batch_size": 32, "lr": 1e-3, "iterations": ITERATIONS,
                     "eval_every": ITERATIONS, "eval_samples": 100, "threads": 1},
        "job": {"mode": "dp-async", "store": {"target_staleness": 1000}},
        "cluster": {
            "devices": [{"name": "desktop", "profile": "desktop", "memory": "2g"},
                        {"name": "tx2", "profile": "jetson-tx2", "memory": "2g"}],
            "links": [{"device": "desktop", "rate": "100mbit"},
                      {"device": "tx2", "rate": "100mbit"}]},
        "planner": {"prefer": "energy", "profile": WINDOWS},
    }  # fmt: skip
    out = path / "planned.yaml"
    out.write_text(json.dumps(raw))  # JSON is YAML
    return out


def _events(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "events.jsonl").read_text().splitlines() if x.strip()]


def test_a_planned_run_profiles_picks_trains_the_rest_and_compares(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    results = tmp_path / "results"
    argv = ["run", str(_spec(tmp_path)), "--results", str(results), "--no-progress"]
    got = CliRunner().invoke(app, argv)
    failure = "".join(traceback.format_exception(*got.exc_info)) if got.exc_info else ""
    assert got.exit_code == 0, got.output + failure  # the traceback of an uncaught error too
    (run,) = (results / "planned").iterdir()
    s = read_summary(run)
    assert s["status"] == "completed", s.get("reason")
    p = s["planner"]

    # the pick, and the run that followed it
    assert p["prefer"] == {"energy": 1.0} and p["pick"] == "tx2" and p["ps"] == "tx2", p
    planned = next(e for e in _events(run) if e["event"] == "workers_planned")["devices"]
    assert planned == {"ps": "tx2", "replica0": "tx2"}
    assert s["workers"]["replica0"]["step"] == REMAINING  # the rest after the profiling windows

    # the plan it picked from: every configuration ranked, the pick first, profiling runs kept
    plan = json.loads((run / p["plan"]).read_text())
    ranked = [r["config"] for r in plan["configs"]]
    assert sorted(ranked) == ["desktop", "desktop+tx2", "tx2"] and ranked[0] == "tx2"
    assert plan["configs"][0]["energy_j"] == pytest.approx(p["predicted"]["energy_j"])
    for device, path in plan["profiling_runs"].items():
        profiled = read_summary(run / "profiling" / path)
        assert profiled["status"] == "completed" and device in profiled["power"]["devices"]
        assert not find(Path(path).name)  # each profiling run cleaned up after itself
    assert set(plan["links"]["bandwidth_bps"]) == {"desktop", "tx2"}
    assert all(0.8e8 < b < 1.05e8 for b in plan["links"]["bandwidth_bps"].values())

    # prediction beside measurement: the measurement is the run's own (the meter's energy, the
    # run's train time), not the prediction copied, and the errors are what the two give
    pred, meas = p["predicted"], p["measured"]
    energy = s["power"]["energy_j"] + s["power"].get("startup", {}).get("energy_j", 0.0)
    assert meas["energy_j"] == pytest.approx(energy)
    assert meas["train_s"] == pytest.approx(s["train_time_s"])
    assert pred["energy_j"] != meas["energy_j"] and pred["train_s"] != meas["train_s"]
    for m, key in (("time", "time_s"), ("energy", "energy_j"), ("power", "power_w")):
        want = abs(pred[key] - meas[key]) / meas[key]
        assert p["relative_error"][m] == pytest.approx(want), m
    assert p["relative_error"]["step"] == pytest.approx(
        abs(pred["step_s"] - meas["step_s"]) / meas["step_s"])
    # a TX2 alone: its power sits between its idle 2 W and busy 15 W (both included: a device
    # kept busy at its full quota draws exactly its busy power), measured and predicted
    lo, hi = 2.0 - 1e-9, 15.0 + 1e-9
    assert lo <= meas["power_w"] <= hi and lo <= pred["power_w"] <= hi
    assert meas["steps"] == pred["steps"] == {"tx2": REMAINING}  # keyed alike, by device
    print("planned run: relative errors", {k: round(v, 3) for k, v in p["relative_error"].items()})

    # the overhead: profiling took real time, estimation almost none, total covers both
    o = p["overhead_s"]
    assert o["profiling"] > 1.0 and 0 <= o["estimation"] < 1.0
    assert o["total"] >= o["profiling"] and all(math.isfinite(v) for v in o.values())
    assert not find(run.name)
