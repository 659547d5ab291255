"""The planner's ground truth read from a run (summary + events), on a literal run record."""

from __future__ import annotations

import pytest

from testbed.planner.outcome import outcome


def _run() -> tuple[dict, list[dict]]:
    summary = {
        "train_time_s": 12.0,
        "workers": {"replica0": {"step": 22}, "replica1": {"step": 8}},
        "power": {"energy_j": 300.0, "startup": {"energy_j": 60.0}},
    }
    events = [
        {"event": "workers_started", "t": 100.0},
        {"event": "workers_planned", "t": 100.5,
         "devices": {"ps": "desktop", "replica0": "desktop", "replica1": "tx1"}},
        {"event": "training_started", "t": 104.0},
    ]  # fmt: skip
    return summary, events


def test_outcome_keys_steps_by_device_like_the_prediction_and_adds_startup_energy() -> None:
    got = outcome(*_run())
    assert got.steps == {"desktop": 22, "tx1": 8}  # by device, as Estimate.steps is
    assert got.startup_s == 4.0 and got.train_s == 12.0 and got.time_s == 16.0
    assert got.energy_j == 360.0  # training + startup, both metered
    assert got.step_s == pytest.approx(12.0 / 30)
    assert got.power_w == pytest.approx(360.0 / 16.0)


def test_two_replicas_on_one_device_add_up() -> None:
    summary, events = _run()
    events[1]["devices"]["replica1"] = "desktop"
    assert outcome(summary, events).steps == {"desktop": 30}


def test_a_run_without_metered_energy_is_refused() -> None:
    summary, events = _run()
    del summary["power"]["energy_j"]
    with pytest.raises(ValueError, match="summary.power.energy_j"):
        outcome(summary, events)
