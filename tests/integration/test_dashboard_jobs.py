"""Starting and stopping real tiny experiments through the dashboard API (SIGINT, reaping)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from testbed.dashboard import create_app

pytestmark = pytest.mark.slow  # trains a real (tiny) model in subprocesses
TOKEN = "jobs-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SPEC = """name: {name}
model: {{name: four-layer}}
data: {{dataset: mnist}}
algorithm: {{name: bp}}
training:
  {{batch_size: 32, iterations: {iterations}, eval_every: 10, eval_samples: 500, threads: 1,
   lr: 0.001}}
"""


def wait_for(what: str, probe: Callable[[], Any], timeout_s: float = 150.0) -> Any:
    """Poll `probe` until it returns something truthy; fail naming `what` after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while not (value := probe()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.2)
    return value


@pytest.fixture()
def app(tmp_path: Path):
    exp = tmp_path / "experiments"
    exp.mkdir()
    (exp / "tiny.yaml").write_text(SPEC.format(name="tiny", iterations=30))
    (exp / "long.yaml").write_text(SPEC.format(name="long", iterations=100_000))
    (tmp_path / "results").mkdir()
    app = create_app(tmp_path / "results", token=TOKEN, experiments_dir=exp)
    yield app
    app.extensions["testbed_dashboard"].jobs.shutdown()


def start(client, name: str) -> dict[str, Any]:
    resp = client.post(f"/api/experiments/{name}/start", json={}, headers=AUTH)
    assert resp.status_code == 202, resp.get_json()
    assert resp.headers["Location"] == f"/api/jobs/{resp.get_json()['job']['id']}"
    return resp.get_json()["job"]


def job(client, job_id: str) -> dict[str, Any]:
    return client.get(f"/api/jobs/{job_id}").get_json()["job"]


def test_start_complete_stop_interrupt_and_reap_on_shutdown(app) -> None:
    client = app.test_client()
    tiny, long = start(client, "tiny"), start(client, "long")
    assert client.post("/api/experiments/tiny/start", headers=AUTH).status_code == 409  # 2 running

    # the long run: once it has evaluated, stop it through the API; it records 'interrupted'
    long_run = wait_for("the long run's directory", lambda: job(client, long["id"])["run"])
    evals = f"/api/runs/long/{long_run}/metrics?kind=eval"
    wait_for("a first evaluation of the long run", lambda: client.get(evals).get_json()["records"])
    assert client.get(f"/api/runs/long/{long_run}").get_json()["run"]["status"] == "running"
    stopped = client.post(f"/api/runs/long/{long_run}/stop", headers=AUTH)
    assert stopped.status_code == 202 and stopped.get_json()["job"]["stop_requested"]
    wait_for("the long run to exit", lambda: not job(client, long["id"])["alive"], 60)
    run = client.get(f"/api/runs/long/{long_run}").get_json()
    assert run["run"]["status"] == "interrupted" and run["summary"]["status"] == "interrupted"
    assert (
        client.post(f"/api/runs/long/{long_run}/stop", headers=AUTH).status_code == 409
    )  # already exited

    # the tiny run completes on its own
    wait_for("the tiny run to finish", lambda: not job(client, tiny["id"])["alive"])
    done = job(client, tiny["id"])
    assert done["exit_code"] == 0, done["log_tail"]
    info = client.get(f"/api/runs/tiny/{done['run']}").get_json()
    assert info["run"]["status"] == "completed" and 0 < info["run"]["final_test_accuracy"] <= 1
    assert info["kinds"]["eval"] == 3 and info["run"]["iterations"] == 30

    # a run still going when the app shuts down is interrupted and reaped
    third = start(client, "long")
    proc = next(
        j for j in app.extensions["testbed_dashboard"].jobs.jobs() if j.id == third["id"]
    ).proc
    app.extensions["testbed_dashboard"].jobs.shutdown()
    assert proc.returncode is not None
    assert client.post("/api/experiments/tiny/start", headers=AUTH).status_code == 503
