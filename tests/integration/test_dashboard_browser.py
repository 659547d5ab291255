"""A real browser (headless Chromium, Selenium, chromedriver) watches a live run's chart update."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from testbed.dashboard import create_app
from testbed.dashboard.server import serving
from testbed.testing import browser
from testbed.testing.runs import eval_record, make_run, write_lines

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(browser.missing() is not None, reason=f"no browser: {browser.missing()}"),
]
LIVE = ("four-layer-sg", "20260101-000200-smoke-live")
POINTS = "Number(document.getElementById('chart-accuracy-step')?.dataset.points || 0)"


def ready(base: str) -> bool:
    """The server answers its API (readiness by polling, not by sleeping)."""
    with urllib.request.urlopen(f"{base}/api/runs", timeout=5) as resp:
        return resp.status == 200


def test_live_run_page_chart_updates_in_chromium(tmp_path: Path) -> None:
    root = tmp_path / "results"
    make_run(root, "four-layer-bp", "20260101-000000-smoke-done", steps=400, eval_every=50)
    live = make_run(root, *LIVE, steps=300, eval_every=50, status=None, per_device=True)
    app = create_app(root)
    app.config["DASHBOARD_POLL_MS"] = 250
    tags = {"run": LIVE[1], "experiment": LIVE[0], "mode": "inprocess"}
    with serving(app) as base, browser.chromium(tmp_path / "chromium-profile") as driver:
        assert ready(base)
        driver.get(f"{base}/runs/{LIVE[0]}/{LIVE[1]}")
        before = browser.wait_js(driver, f"{POINTS} > 0 && {POINTS}", 20)
        assert before == 6
        assert driver.find_element("id", "run-status").text == "running"
        for i, step in enumerate((350, 400, 450)):  # the run goes on: new evaluations arrive
            write_lines(
                live / "metrics.jsonl", [eval_record(step, 0.8 + 0.05 * i, step * 0.05, tags)]
            )
        after = browser.wait_js(driver, f"{POINTS} >= {before + 3} && {POINTS}", 20)
        assert after == before + 3
        assert browser.chart_points(driver, "worker-cpu") > 0  # per-device charts drawn too
        driver.save_screenshot(str(tmp_path / "dashboard-run-live.png"))
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors  # no script errors, no CSP violations, no failed requests

        summary = {
            "status": "completed",
            "final_test_accuracy": 0.9,
            "mode": "inprocess",
            "mean_it_s": 20.0,
        }
        (live / "summary.json").write_text(json.dumps(summary))
        browser.wait_js(
            driver, "document.getElementById('run-status').textContent === 'completed'", 20
        )
        driver.set_window_size(1400, 3000)
        driver.save_screenshot(str(tmp_path / "dashboard-run-full.png"))
        driver.get(f"{base}/")
        browser.wait_js(
            driver, "document.querySelectorAll('#runs-table tbody tr').length === 2", 10
        )
        driver.save_screenshot(str(tmp_path / "dashboard-runs.png"))
    for name in ("dashboard-run-live.png", "dashboard-run-full.png", "dashboard-runs.png"):
        assert (tmp_path / name).stat().st_size > 10_000  # kept under the test's tmp_path
