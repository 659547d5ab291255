"""What the planner reads back from a profiling run's record, on a literal summary."""

from __future__ import annotations

import json
from pathlib import Path

from testbed.planner.profiling import wire_bytes


def test_wire_bytes_are_per_step_not_per_message(tmp_path: Path) -> None:
    # 30 steps: 30 pulls of the model (1000 B each) and a last pull with no step left (12 B)
    replica = {"step": 30, "peers": {"received:ps": {"message_bytes": 30 * 1000 + 12, "messages": 31},
                                     "sent:ps": {"message_bytes": 30 * 900, "messages": 30}}}
    (tmp_path / "summary.json").write_text(json.dumps({"workers": {"replica0": replica}}))
    assert wire_bytes(tmp_path) == (1000, 900)
