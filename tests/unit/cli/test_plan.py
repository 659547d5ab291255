"""`testbed plan` / `testbed validate` on a bad `planner:` block or preference: exit 2 with the
field path and the expected form, nothing profiled."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from testbed.cli import app

runner = CliRunner()


@pytest.mark.parametrize(("args", "fragments"), [
    (("validate", "planner-seed", "planner.prefer=speed"),
     ("planner.prefer", "unknown preference 'speed'", "expected one of time, power, energy, edp")),
    (("validate", "planner-seed", "planner.candidates=[desktop,phone]"),
     ("planner.candidates", "'phone' names no device", "known: desktop, tx2, tx1")),
    (("validate", "planner-seed", "job.mode=bp-sync"),
     ("planner:", "got job.mode 'bp-sync'", "expected job.mode: dp-async")),
    (("validate", "planner-seed", "planner.profile.time_steps=0"),
     ("planner.profile.time_steps", "greater than 0")),
    (("plan", "planner-seed", "--prefer", "joules"),
     ("--prefer", "unknown preference 'joules'", "expected one of time, power, energy, edp")),
])  # fmt: skip
def test_bad_planner_exits_2_naming_the_field_and_the_form(args, fragments) -> None:
    res = runner.invoke(app, list(args))
    assert res.exit_code == 2, res.output
    flat = " ".join(res.output.split())
    for fragment in fragments:
        assert fragment in flat, flat
