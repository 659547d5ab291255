"""`testbed plan` on a saved profile: the table, JSON and figure; errors exit 2."""

import json
import os
import subprocess
import sys

import pytest

from testbed.controller.partition_plan import with_measured
from testbed.paths import PROJECT_ROOT

UNITS = ["block1_conv1", "block1_conv2", "block1_pool", "block2_conv1", "block2_conv2",
         "block2_pool", "block3_conv1", "block3_pool", "fc1", "fc2", "fc3"]


def _plan(tmp_path, *args):
    env = {**os.environ, "TESTBED_RESULTS": str(tmp_path / "results"), "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, "-m", "testbed", "plan", *args], cwd=PROJECT_ROOT,
                          env=env, capture_output=True, text=True, timeout=300)


def test_plan_prints_the_partition_and_writes_json_and_figure(tmp_path):
    profile = tmp_path / "profile.json"
    profile.write_text(json.dumps({
        "units": UNITS, "unit_s": [0.002, 0.03, 0.001, 0.015, 0.03, 0.001, 0.015, 0.001, 0.003,
                                   0.001, 0.001],
        "sg_s": [0.002] * 10, "stage_s": 0.0005, "wire_s_per_byte": 1e-9}))
    res = _plan(tmp_path, "eight-layer-sg-hetero", "--scale", "smoke", "--profile", str(profile))
    assert res.returncode == 0, res.stderr
    assert "split_after: [" in res.stdout and "balance by time" in res.stdout
    out = tmp_path / "results" / "plan" / "eight-layer-sg-hetero-smoke"
    body = json.loads(out.with_suffix(".json").read_text())
    assert [s["device"] for s in body["plan"]["stages"]] == ["fast", "slow1", "slow2", "slow3"]
    assert body["plan"]["bound_it_s"] >= body["baselines"]["balance_by_time"]["bound_it_s"]
    assert out.with_suffix(".png").stat().st_size > 0


def test_plan_errors_exit_2(tmp_path):
    res = _plan(tmp_path, "eight-layer-sg-hetero", "--order", "random")
    assert res.returncode == 2 and "--order: got 'random'; expected fixed or free" in res.stderr
    res = _plan(tmp_path, "eight-layer-sg")  # no cluster
    assert res.returncode == 2 and "the spec has no cluster" in res.stderr


def test_measured_beside_predicted():
    partition = {"plan": {"stages": [{"device": "a", "compute_s": 0.11},
                                     {"device": "b", "compute_s": 0.09},
                                     {"device": "c", "compute_s": 0.05}]}}
    out = with_measured(partition, {"a": {"compute_per_step_s": 0.1},
                                    "b": {"compute_per_step_s": 0.1}, "c": {}})
    assert [round(r["error"], 6) if r["error"] is not None else None
            for r in out["predicted_vs_measured"]] == [0.1, -0.1, None]
    assert out["median_abs_error"] == pytest.approx(0.1)
