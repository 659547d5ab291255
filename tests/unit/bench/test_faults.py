"""The faults benchmark's pure parts: fault schedules and timings read from a run's records."""

from __future__ import annotations

import pytest

from testbed.bench.faults import OUTAGE_S, schedule, timings


def test_outages_end_after_outage_s_and_kills_hit_the_ps_or_a_device() -> None:
    assert schedule("pause", 12.5) == [{"at_s": 12.5, "device": "edge1", "fault": "pause"},
                                       {"at_s": 12.5 + OUTAGE_S, "device": "edge1", "fault": "resume"}]
    assert schedule("ps-kill", 3.0) == [{"at_s": 3.0, "worker": "ps", "fault": "kill"}]
    assert [e["fault"] for e in schedule("link-down", 1.0)] == ["link-down", "link-up"]


def test_detection_is_fault_to_notice_and_recovery_notice_to_training_after_the_outage() -> None:
    events = [
        {"event": "worker_unresponsive", "t": 5.0},  # before the fault: not its notice
        {"event": "fault_injected", "t": 10.0},
        {"event": "worker_unresponsive", "t": 11.2},
        {"event": "fault_injected", "t": 15.0},  # the outage ends
        {"event": "worker_responsive", "t": 15.3},
    ]
    trains = [{"t": 9.0}, {"t": 12.0}, {"t": 15.8}, {"t": 16.3}]
    got = timings(events, trains)
    assert got["detection_s"] == pytest.approx(1.2) and got["noticed_by"] == "worker_unresponsive"
    assert abs(got["recovery_s"] - (15.8 - 11.2)) < 1e-9  # not 12.0: still inside the outage
    killed = [{"event": "fault_injected", "t": 10.0}, {"event": "worker_failed", "t": 10.3}]
    got = timings(killed, [{"t": 10.1}, {"t": 31.0}])
    assert abs(got["detection_s"] - 0.3) < 1e-9 and abs(got["recovery_s"] - 20.7) < 1e-9
    assert timings([], trains) == {"detection_s": None, "recovery_s": None}
