"""A run's summary.json says how it was made (commit, argv, versions, host, load), completed or
failed, and names no machine path."""

import pytest

from testbed.controller.experiment import run_experiment
from testbed.metrics import provenance
from testbed.metrics.run_dir import find_runs, read_summary
from testbed.spec.load import parse_spec
from testbed.testing.datasets import quadrants
from testbed.training import loop as training_loop


def _spec():
    return parse_spec({
        "name": "tiny", "model": {"name": "four-layer", "width": 0.25}, "algorithm": {"name": "bp"},
        "training": {"batch_size": 32, "iterations": 4, "eval_every": 4, "log_every": 2},
    })  # fmt: skip


def _assert_made_by(summary: dict) -> None:
    made = summary["provenance"]
    assert made["commit"] and made["dirty"] in (True, False)
    assert made["versions"]["tensorflow"] and made["host"]["cores"] >= 1
    assert len(made["load_start"]) == len(made["load_end"]) == 3
    assert made["argv"]
    assert not provenance.absolute_paths(summary), provenance.absolute_paths(summary)


def test_a_completed_run_records_its_provenance(tmp_path, monkeypatch):
    data = quadrants()
    monkeypatch.setattr(training_loop, "load_dataset", lambda name: data)
    summary = read_summary(run_experiment(_spec(), tmp_path, progress=False).path)
    assert summary["status"] == "completed"
    _assert_made_by(summary)


def test_a_failed_run_records_its_provenance_too(tmp_path, monkeypatch):
    def broken(name):
        raise RuntimeError("no data here")

    monkeypatch.setattr(training_loop, "load_dataset", broken)
    with pytest.raises(RuntimeError, match="no data here"):
        run_experiment(_spec(), tmp_path, progress=False)
    summary = read_summary(find_runs(tmp_path, "tiny")[0])
    assert summary["status"] == "failed"
    _assert_made_by(summary)
