"""Dashboard JSON API and pages on a results directory the test builds: shapes, token, paths."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from testbed.dashboard import create_app
from testbed.testing.runs import eval_record, make_run

TOKEN = "t0ken-for-tests"
BP, SG, LIVE, EDGE = (
    ("four-layer-bp", "20260101-000000-smoke-aaaa"),
    ("four-layer-sg", "20260101-000100-smoke-bbbb"),
    ("four-layer-bp", "20260101-000200-smoke-cccc"),
    ("edge-sg", "20260101-000300-smoke-dddd"),
)


@pytest.fixture()
def results(tmp_path: Path) -> Path:
    root = tmp_path / "results"
    make_run(root, *BP, steps=300, eval_every=50)
    make_run(root, *SG, steps=300, eval_every=50, mode="sg")
    make_run(root, *LIVE, steps=120, eval_every=40, status=None)
    make_run(root, *EDGE, steps=100, eval_every=50, status="interrupted", per_device=True)
    return root


@pytest.fixture()
def experiments(tmp_path: Path) -> Path:
    exp = tmp_path / "experiments"
    exp.mkdir()
    (exp / "tiny.yaml").write_text(
        "name: tiny\nmodel: {name: four-layer}\nalgorithm: {name: bp}\n"
        "training: {iterations: 30}\nscales:\n  smoke: {training: {iterations: 10}}\n"
    )
    (exp / "pair.yaml").write_text("name: pair\nsuite: [tiny]\n")
    return exp


@pytest.fixture()
def client(results: Path, experiments: Path):
    app = create_app(results, token=TOKEN, experiments_dir=experiments)
    yield app.test_client()
    app.extensions["testbed_dashboard"].jobs.shutdown()


def auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_runs_list_has_status_mode_devices_accuracy(client) -> None:
    runs = {r["key"]: r for r in client.get("/api/runs").get_json()["runs"]}
    assert set(runs) == {"/".join(k) for k in (BP, SG, LIVE, EDGE)}
    bp, live, edge = runs["/".join(BP)], runs["/".join(LIVE)], runs["/".join(EDGE)]
    assert (bp["status"], bp["mode"], bp["mean_it_s"]) == ("completed", "inprocess", 20.0)
    assert bp["final_test_accuracy"] == pytest.approx(0.98 - 0.88 * 2.718281828**-1, abs=1e-4)
    assert live["status"] == "running" and live["final_test_accuracy"] is None
    assert live["last_step"] == 120 and live["last_test_accuracy"] > 0
    assert edge["status"] == "interrupted" and edge["devices"] == ["edge1", "edge2", "cloud"]
    assert runs["/".join(SG)]["mode"] == "sg"


def test_run_detail_shape(client) -> None:
    d = client.get(f"/api/runs/{EDGE[0]}/{EDGE[1]}").get_json()
    assert d["run"]["status"] == "interrupted" and d["spec"]["name"] == "edge-sg"
    assert [x["name"] for x in d["devices"]] == ["edge1", "edge2", "cloud"]
    assert d["links"] == [
        {"name": "edge1-edge2", "pair": "edge1-edge2", "rate": "100mbit"},
        {"name": "cloud", "device": "cloud", "rate": "1gbit"},
    ]
    assert d["schedule"] == [
        {"name": "edge1-edge2", "at_s": 30.0, "pair": "edge1-edge2", "rate": "10mbit"}
    ]
    assert d["kinds"] == {"train": 100, "eval": 2, "worker": 30, "link": 20}
    observed = {(g["kind"], tuple(sorted(g["tags"].items()))): g for g in d["observed"]}
    assert observed[("worker", (("device", "edge2"), ("stage", "1")))]["latest"][
        "cpu"
    ] == pytest.approx(0.6)
    assert d["lines"] == 152 and d["bad_lines"] == 0 and d["job"] is None


def test_metrics_incremental_since(client, results: Path) -> None:
    url = f"/api/runs/{LIVE[0]}/{LIVE[1]}/metrics"
    first = client.get(f"{url}?kind=eval").get_json()
    assert [r["step"] for r in first["records"]] == [40, 80, 120]
    assert first["next"] == first["lines"] == 123 and first["records"][0]["kind"] == "eval"
    assert first["records"][0]["run"] == LIVE[1]
    with open(results / LIVE[0] / LIVE[1] / "metrics.jsonl", "a") as f:
        f.write(
            json.dumps(eval_record(160, 0.9, 8.0, {})) + "\n" + '{"kind": "eval", "step": 2'
        )  # partial line
    more = client.get(f"{url}?kind=eval&since={first['next']}").get_json()
    assert [r["step"] for r in more["records"]] == [160] and more["next"] == 124
    with open(results / LIVE[0] / LIVE[1] / "metrics.jsonl", "a") as f:
        f.write('00, "test_acc": 0.95}\n')
    last = client.get(f"{url}?kind=eval&since={more['next']}").get_json()
    assert [(r["step"], r["test_acc"]) for r in last["records"]] == [(200, 0.95)]
    page = client.get(f"{url}?since=0&limit=5").get_json()
    assert len(page["records"]) == 5 and page["next"] == 5 and page["truncated"]


@pytest.mark.parametrize("query", ["since=-1", "since=x", "limit=0", "kind=../x"])
def test_metrics_bad_query_is_400(client, query: str) -> None:
    resp = client.get(f"/api/runs/{BP[0]}/{BP[1]}/metrics?{query}")
    assert resp.status_code == 400 and "error" in resp.get_json()


def test_charts_downsampled_and_etag(client) -> None:
    url = f"/api/runs/{EDGE[0]}/{EDGE[1]}/charts?points=20"
    resp = client.get(url)
    data = resp.get_json()
    charts = {c["id"]: c for c in data["charts"]}
    assert {
        "accuracy-step",
        "accuracy-time",
        "throughput",
        "loss",
        "worker-it_s",
        "link-bytes",
    } <= set(charts)
    thr = charts["throughput"]["series"][0]
    assert thr["total"] == 100 and len(thr["x"]) <= 20 and thr["x"][0] == 1 and thr["x"][-1] == 100
    assert [s["name"] for s in charts["loss"]["series"]] == ["loss"]  # all-zero SG loss left out
    assert len(charts["worker-cpu"]["series"]) == 3
    again = client.get(url, headers={"If-None-Match": resp.headers["ETag"]})
    assert again.status_code == 304


def test_compare_two_runs_and_latest_by_experiment(client) -> None:
    keys = f"{'/'.join(BP)},{SG[0]}"
    data = client.get(f"/api/compare?runs={keys}").get_json()
    assert [r["key"] for r in data["runs"]] == ["/".join(BP), "/".join(SG)]
    acc = next(c for c in data["charts"] if c["id"] == "accuracy-step")
    assert [s["name"] for s in acc["series"]] == ["/".join(BP), "/".join(SG)]
    loss = next(c for c in data["charts"] if c["id"] == "loss")
    assert [s["name"] for s in loss["series"]] == ["/".join(BP), "/".join(SG)] and loss["log_y"]
    assert {"path": "name", "values": [BP[0], SG[0]]} not in data["spec_diff"]  # names always differ
    assert {"path": "job.mode", "values": ["inprocess", "sg"]} in data["spec_diff"]
    assert client.get("/api/compare?runs=nope").status_code == 404
    assert client.get("/api/compare?runs=").status_code == 400


def test_pages_render(client) -> None:
    assert b"edge-sg" in client.get("/").data
    page = client.get(f"/runs/{EDGE[0]}/{EDGE[1]}")
    assert page.status_code == 200 and b'id="charts"' in page.data and b"edge1" in page.data
    assert (
        b"cluster" not in client.get(f"/runs/{BP[0]}/{BP[1]}").data.split(b"Resolved spec")[1][:10]
    )
    assert client.get(f"/compare?runs={'/'.join(BP)}&runs={'/'.join(SG)}").status_code == 200
    assert b"?runs=four-layer-bp,four-layer-sg" in client.get("/compare").data  # BP-vs-SG shortcut
    assert client.get("/runs/nope/nope").status_code == 404
    assert client.get("/static/charts.js").status_code == 200


@pytest.mark.parametrize(
    "url",
    [
        "/api/runs/../..",
        "/api/runs/%2e%2e/%2e%2e",
        "/api/runs/..%2f..%2fetc/passwd",
        "/api/runs//etc/passwd",
        "/api/runs/four-layer-bp/..",
        "/api/runs/%2e%2e/results/metrics",
        "/runs/../../etc",
        "/static/../app.py",
        "/api/compare?runs=../../etc",
        "/api/compare?runs=/etc/passwd",
        "/api/compare?runs=a/b/c",
        "/api/runs/four-layer-bp/..%5c..%5cx/metrics",
        "/api/runs/.hidden/run",
    ],
)
def test_traversal_refused(client, url: str) -> None:
    resp = client.get(url)
    assert resp.status_code in (400, 404), (url, resp.status_code)
    assert b"root:" not in resp.data


def test_symlinks_out_of_results_refused(client, results: Path, tmp_path: Path) -> None:
    outside = make_run(tmp_path / "elsewhere", "secret", "20260101-000000-smoke-ffff")
    (results / "evil").symlink_to(outside.parent, target_is_directory=True)
    (results / BP[0] / "link-run").symlink_to(outside, target_is_directory=True)
    for url in (
        "/api/runs/evil/20260101-000000-smoke-ffff",
        f"/api/runs/{BP[0]}/link-run",
        f"/api/runs/{BP[0]}/link-run/metrics",
        "/runs/evil/20260101-000000-smoke-ffff",
    ):
        assert client.get(url).status_code == 404, url
    listed = {r["key"] for r in client.get("/api/runs").get_json()["runs"]}
    assert "evil/20260101-000000-smoke-ffff" not in listed and f"{BP[0]}/link-run" not in listed


def test_mutations_need_the_token(client) -> None:
    start, stop = "/api/experiments/tiny/start", f"/api/runs/{LIVE[0]}/{LIVE[1]}/stop"
    for url in (start, stop, "/api/jobs/abc/stop"):
        missing = client.post(url)
        assert missing.status_code == 401 and missing.headers["WWW-Authenticate"].startswith(
            "Bearer"
        )
        assert client.post(url, headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401
        assert client.post(url, headers=auth("wrong")).status_code == 403
        assert client.post(url, headers=auth(TOKEN + "x")).status_code == 403
    assert client.get(start).status_code == 405  # never by GET
    assert (
        client.post(stop, headers=auth()).status_code == 409
    )  # not started here: cannot be stopped


def test_mutations_refused_without_configured_token(
    results: Path, experiments: Path, monkeypatch
) -> None:
    monkeypatch.delenv("TESTBED_DASHBOARD_TOKEN", raising=False)
    app = create_app(results, experiments_dir=experiments)
    resp = app.test_client().post("/api/experiments/tiny/start", headers=auth(""))
    assert resp.status_code == 403 and "no token configured" in resp.get_json()["error"]
    assert (
        app.test_client().post("/api/experiments/tiny/start", headers=auth("anything")).status_code
        == 403
    )
    monkeypatch.setenv("TESTBED_DASHBOARD_TOKEN", "from-env")
    app = create_app(results, experiments_dir=experiments)
    assert (
        app.test_client().post("/api/experiments/nope/start", headers=auth("from-env")).status_code
        == 404
    )


@pytest.mark.parametrize(
    ("name", "body", "status"),
    [
        ("nope", {}, 404),
        ("..", {}, 400),
        ("%2e%2e%2ftiny", {}, 404),
        ("tiny.yaml", {}, 404),
        ("pair", {}, 400),
        ("tiny", {"scale": "huge"}, 400),
        ("tiny", {"scale": "../x"}, 400),
    ],
)
def test_start_validates_experiment_and_scale(client, name: str, body: dict, status: int) -> None:
    resp = client.post(f"/api/experiments/{name}/start", json=body, headers=auth())
    assert resp.status_code == status, resp.get_json()
    assert client.get("/api/jobs").get_json()["jobs"] == []


def test_start_refuses_spec_symlinked_outside(client, experiments: Path, tmp_path: Path) -> None:
    (tmp_path / "outside.yaml").write_text("name: outside\n")
    (experiments / "outside.yaml").symlink_to(tmp_path / "outside.yaml")
    assert client.post("/api/experiments/outside/start", headers=auth()).status_code == 400


def test_experiments_listing(client) -> None:
    exps = {e["name"]: e for e in client.get("/api/experiments").get_json()["experiments"]}
    assert exps["tiny"]["scales"] == ["paper", "smoke"] and exps["pair"]["suite"]


def test_warm_start_parses_running_then_newest_runs(results: Path) -> None:
    app = create_app(results, warm_runs=2)
    store = app.extensions["testbed_dashboard"].store
    store.warming.join(timeout=30)
    warmed = {p.parent.name + "/" + p.name for p in store.metrics._runs}
    assert warmed == {"/".join(LIVE), "/".join(EDGE)}  # the running one, then the newest


def test_host_header_checked_and_security_headers(client) -> None:
    for host in ("localhost", "127.0.0.1:8050"):
        assert client.get("/api/runs", headers={"Host": host}).status_code == 200, host
    for host in ("evil.example:8050", "127.0.0.1.evil.example"):  # DNS rebinding names
        assert client.get("/api/runs", headers={"Host": host}).status_code == 400
    page = client.get("/")
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Content-Type-Options"] == "nosniff"


def test_module_entry_binds_localhost_and_reaps(results: Path) -> None:
    env = {**os.environ, "TESTBED_DASHBOARD_TOKEN": ""}
    proc = subprocess.Popen(
        [sys.executable, "-m", "testbed.dashboard", "--port", "0", "--results", str(results)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        text=True,
    )
    try:
        line = proc.stdout.readline()  # printed once the socket listens
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert match, line
        import urllib.request

        with urllib.request.urlopen(
            f"http://127.0.0.1:{match.group(1)}/api/runs", timeout=10
        ) as resp:
            assert len(json.load(resp)["runs"]) == 4
        assert "start/stop: disabled" in line
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0


def test_bench_writes_json(tmp_path: Path) -> None:
    from testbed.bench import dashboard as bench

    out = bench.main(tmp_path / "dashboard.json", points=2000, with_browser=False)
    saved = json.loads((tmp_path / "dashboard.json").read_text())
    assert saved["metric_points"] == out["metric_points"] > 1900
    assert {"first_view_never_parsed_s", "first_view_as_served_s", "meets_target"} <= set(saved)


def test_time_to_accuracy_on_the_list_run_and_compare_pages(client, results: Path) -> None:
    """A run that reached 0.9 at step 800 after 40 training seconds (0.95 and 0.98 never)."""
    make_run(results, "long-bp", "20260101-000400-smoke-eeee", steps=1000, eval_every=100)
    key = "long-bp/20260101-000400-smoke-eeee"
    runs = {r["key"]: r for r in client.get("/api/runs").get_json()["runs"]}
    assert runs[key]["time_to_accuracy"] == [
        {"level": 0.9, "step": 800, "train_s": pytest.approx(40.0)},
        {"level": 0.95, "step": None, "train_s": None},
        {"level": 0.98, "step": None, "train_s": None}]
    assert "0.9 40 s · 0.95 — · 0.98 —" in client.get("/").get_data(as_text=True)
    page = client.get(f"/runs/{key}").get_data(as_text=True)
    table = page.split('id="time-to-accuracy"')[1].split("</table>")[0]
    cells = [c.split("</td>")[0].strip() for c in table.split('<td class="num">')[1:]]
    assert cells[:3] == ["0.9", "800", "40.0"] and cells[4] == "not reached"
    compare = client.get(f"/api/compare?runs={key}").get_json()
    assert compare["runs"][0]["time_to_accuracy"][0]["step"] == 800


def test_power_per_device_in_charts_and_run_page(tmp_path: Path) -> None:
    """The meter's points chart one line per device; the summary's energy shows as a table."""
    from testbed.testing.runs import write_lines

    root = tmp_path / "results"
    path = make_run(root, "power-run", "20260101-000400-smoke-eeee", steps=20, eval_every=10)
    tags = {"run": path.name, "experiment": "power-run", "mode": "dp-async", "meter": "model"}
    write_lines(path / "metrics.jsonl", [
        {"kind": "power", "t": 1.7e9 + i, **tags, "device": dev, "power_w": w + i,
         "energy_j": (w + i) * i, "utilisation": 0.5}
        for i in range(5) for dev, w in (("desktop", 100.0), ("tx2", 10.0))
    ])  # fmt: skip
    summary = json.loads((path / "summary.json").read_text())
    summary["power"] = {"kind": "model: ...", "energy_j": 520.0, "power_w": 104.0,
                        "seconds": 5.0, "edp_js": 2600.0, "devices": {
        "desktop": {"power_w": 94.0, "energy_j": 470.0, "utilisation": 0.6, "seconds": 5.0,
                    "model": {"idle_w": 45.0, "busy_w": 170.0}},
        "tx2": {"power_w": 10.0, "energy_j": 50.0, "utilisation": 0.6, "seconds": 5.0}}}
    (path / "summary.json").write_text(json.dumps(summary))  # fmt: skip
    app = create_app(root)
    client = app.test_client()
    charts = {c["id"]: c for c in
              client.get(f"/api/runs/power-run/{path.name}/charts").get_json()["charts"]}
    names = sorted(s["name"] for s in charts["power-power_w"]["series"])
    assert names == ["device=desktop, meter=model", "device=tx2, meter=model"]
    page = client.get(f"/runs/power-run/{path.name}").data.decode()
    assert 'id="power"' in page and "not this host" in page
    table = page.split('id="power"')[1].split("</table>")[0]
    assert "desktop" in table and "470.0" in table and "all (model)" in table and "2600.0" in table
    app.extensions["testbed_dashboard"].jobs.shutdown()
