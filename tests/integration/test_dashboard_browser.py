"""A real browser (headless Chromium, Selenium, chromedriver) watches a live run's chart update."""

from __future__ import annotations

import json
import math
import urllib.request
from pathlib import Path

import pytest
from selenium.webdriver.common.action_chains import ActionChains

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


BLUE, RED = "#2563eb", "#dc2626"  # the first two series colours of charts.js


def test_charts_draw_zoom_sync_toggle_and_log_in_chromium(tmp_path: Path) -> None:
    """What the uPlot charts draw, not only how many points they were given."""
    root = tmp_path / "results"
    make_run(root, "four-layer-sg", "20260101-000300-smoke-done", steps=400, eval_every=50, per_device=True)
    with serving(create_app(root)) as base, browser.chromium(tmp_path / "chromium-profile") as driver:
        assert ready(base)
        driver.set_window_size(1400, 2400)
        driver.get(f"{base}/runs/four-layer-sg/20260101-000300-smoke-done")
        browser.wait_js(driver, "document.getElementById('chart-worker-cpu')?._uplot", 20)
        # the accuracy line: exactly the eight evaluations, drawn in the first colour
        accs = browser.uplot(driver, "accuracy-step", "[u.data[0], u.data[1]]")
        assert accs[0] == [50, 100, 150, 200, 250, 300, 350, 400]
        assert accs[1] == pytest.approx([0.98 - 0.88 * math.exp(-s / 300) for s in accs[0]])  # make_run's curve
        assert browser.canvas_pixels(driver, "accuracy-step", BLUE) > 100
        # series toggle: a legend click hides device 2's line (the second colour) and shows it again
        assert browser.canvas_pixels(driver, "worker-cpu", RED) > 100
        entries = "document.querySelectorAll('#chart-worker-cpu .u-legend .u-series')"
        driver.execute_script(f"{entries}[2].querySelector('th').click()")
        assert browser.uplot(driver, "worker-cpu", "u.series[2].show") is False
        assert browser.canvas_pixels(driver, "worker-cpu", RED) == 0
        driver.execute_script(f"{entries}[2].querySelector('th').click()")
        assert browser.canvas_pixels(driver, "worker-cpu", RED) > 100
        # log scale: the loss chart starts on one (the server suggests it), the switch turns it off
        assert browser.uplot(driver, "loss", "u.scales.y.distr") == 3
        driver.execute_script("document.querySelector('#chart-loss .logy input').click()")
        assert browser.uplot(driver, "loss", "u.scales.y.distr") == 1
        # zoom: a drag selection narrows x; the step charts' cursors move together
        full = browser.uplot(driver, "throughput", "u.scales.x.max - u.scales.x.min")
        over = driver.find_element("css selector", "#chart-throughput .u-over")
        ActionChains(driver).move_to_element_with_offset(over, -100, 0).click_and_hold() \
            .move_by_offset(120, 0).release().perform()  # a real mouse drag across the plot
        zoomed = browser.uplot(driver, "throughput", "u.scales.x.max - u.scales.x.min")
        assert 0 < zoomed < full / 2
        browser.uplot(driver, "accuracy-step", "u.setCursor({left: 200, top: 50})")
        synced = browser.uplot(driver, "loss", "u.cursor.idx")
        assert synced is not None and synced > 0
        assert browser.uplot(driver, "accuracy-time", "u.cursor.idx") is None  # other x axis: not synced
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors


def test_compare_shows_loss_and_spec_diff_and_runs_list_sorts_and_filters(tmp_path: Path) -> None:
    root = tmp_path / "results"
    make_run(root, "four-layer-bp", "20260101-000000-smoke-bp", steps=300, eval_every=50)
    make_run(root, "four-layer-sg", "20260102-000000-smoke-sg", steps=200, eval_every=50, mode="sg")
    make_run(root, "vgg16-sg", "20260103-000000-smoke-live", steps=100, eval_every=50, status=None)
    keys = "four-layer-bp/20260101-000000-smoke-bp,four-layer-sg/20260102-000000-smoke-sg"
    with serving(create_app(root)) as base, browser.chromium(tmp_path / "chromium-profile") as driver:
        assert ready(base)
        driver.get(f"{base}/compare?runs={keys}")
        browser.wait_js(driver, "document.getElementById('chart-loss')?._uplot", 20)
        assert browser.uplot(driver, "loss", "u.series.length") == 3  # x + one line per run
        assert browser.canvas_pixels(driver, "loss", BLUE) > 100 and browser.canvas_pixels(driver, "loss", RED) > 100
        rows = driver.execute_script(
            "return [...document.querySelectorAll('#spec-diff tbody tr')].map(r => [...r.cells].map(c => c.textContent))")
        assert ["job.mode", '"inprocess"', '"sg"'] in rows
        assert not any(r[0] == "model.name" for r in rows)  # the same in both: not a difference
        driver.get(f"{base}/")
        table = "document.getElementById('runs-table')"
        browser.wait_js(driver, f"{table}.tBodies[0].rows.length === 3", 10)
        order = f"[...{table}.tBodies[0].rows].filter(r => !r.hidden).map(r => r.dataset.key.split('/')[0])"
        driver.execute_script(f"[...{table}.tHead.rows[0].cells].find(c => c.textContent === 'steps').click()")
        assert driver.execute_script(f"return {order}") == ["four-layer-bp", "four-layer-sg", "vgg16-sg"]
        driver.execute_script(f"[...{table}.tHead.rows[0].cells].find(c => c.textContent === 'steps').click()")
        assert driver.execute_script(f"return {order}") == ["vgg16-sg", "four-layer-sg", "four-layer-bp"]
        driver.execute_script("const s = document.getElementById('runs-search'); s.value = 'sg';"
                              "s.dispatchEvent(new Event('input'))")
        assert sorted(driver.execute_script(f"return {order}")) == ["four-layer-sg", "vgg16-sg"]
        driver.execute_script("const s = document.getElementById('runs-status'); s.value = 'running';"
                              "s.dispatchEvent(new Event('input'))")
        assert driver.execute_script(f"return {order}") == ["vgg16-sg"]
        assert "2026-01-03 00:00" in driver.find_element("id", "runs-table").text  # the started column
