"""Headless Chromium via Selenium and chromedriver (Debian packages): start, wait, screenshot."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMEDRIVER = ("/usr/bin/chromedriver",)
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1700",
)


def _first(paths: tuple[str, ...], name: str) -> str | None:
    found = [p for p in paths if os.access(p, os.X_OK)]
    return found[0] if found else shutil.which(name)


def missing() -> str | None:
    """Why a browser cannot be driven here (apt/pip package to install), or None when it can."""
    if _first(CHROMIUM, "chromium") is None:
        return "chromium is not installed (apt-get install chromium chromium-driver)"
    if _first(CHROMEDRIVER, "chromedriver") is None:
        return "chromedriver is not installed (apt-get install chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install selenium)"
    return None


@contextmanager
def chromium(user_data_dir: Path) -> Iterator[Any]:
    """A Selenium WebDriver for headless Chromium with a fresh profile; always quits."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    reason = missing()
    if reason:
        raise RuntimeError(reason)
    options = webdriver.ChromeOptions()
    options.binary_location = str(_first(CHROMIUM, "chromium"))
    for flag in (*FLAGS, f"--user-data-dir={user_data_dir}"):
        options.add_argument(flag)
    service = Service(executable_path=str(_first(CHROMEDRIVER, "chromedriver")))
    driver = webdriver.Chrome(options=options, service=service)
    try:
        yield driver
    finally:
        driver.quit()


def wait_js(driver: Any, expression: str, timeout_s: float, interval_s: float = 0.05) -> Any:
    """Poll a JavaScript expression until it is truthy; its value, or TimeoutError naming it."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = driver.execute_script(f"return ({expression});")
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"after {timeout_s} s the page still has ({expression}) = {value!r}")
        time.sleep(interval_s)


def chart_points(driver: Any, chart_id: str) -> int:
    """The number of points the chart with that id has drawn (its data-points attribute)."""
    value = driver.execute_script(
        f"const f = document.getElementById('chart-{chart_id}'); "
        "return f ? Number(f.dataset.points) : -1;"
    )
    return int(value)


_PIXELS_JS = """
const fig = document.getElementById('chart-' + arguments[0]);
const canvas = fig && fig.querySelector('canvas');
if (!canvas) return -1;
const [r, g, b] = [1, 3, 5].map((i) => parseInt(arguments[1].slice(i, i + 2), 16));
const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
let n = 0;
for (let i = 0; i < data.length; i += 4) {
  if (data[i + 3] > 128 && Math.abs(data[i] - r) < 40 && Math.abs(data[i + 1] - g) < 40 && Math.abs(data[i + 2] - b) < 40) n++;
}
return n;
"""


def canvas_pixels(driver: Any, chart_id: str, color: str) -> int:
    """Pixels of the chart's canvas drawn in about `color` ('#rrggbb'): what the chart really shows."""
    return int(driver.execute_script(_PIXELS_JS, chart_id, color))


def uplot(driver: Any, chart_id: str, expression: str) -> Any:
    """Evaluate `expression` with `u` bound to the chart's uPlot instance."""
    return driver.execute_script(
        f"const u = document.getElementById('chart-{chart_id}')._uplot; return ({expression});"
    )
