"""The co-run profile: every stage stepping at once in its own process, no messages."""

from __future__ import annotations

import pytest

from testbed.planner.corun import corun_stage_times
from testbed.spec.load import parse_spec

pytestmark = pytest.mark.slow


def test_every_stage_is_timed_while_the_others_step() -> None:
    spec = parse_spec({
        "name": "corun", "model": {"name": "four-layer", "width": 0.25},
        "algorithm": {"name": "sg"}, "job": {"mode": "sg"},
        "training": {"batch_size": 16, "iterations": 1, "threads": 1},
    })
    rows = corun_stage_times(spec, ["conv1"], 2, reps=5)
    assert [r["stage"] for r in rows] == [0, 1]
    for r in rows:
        assert 0 < r["wall_s"] < 5 and 0 < r["cpu_s"] < 5
