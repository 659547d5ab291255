"""Worker training loops, one module per method: sg, local, bp (sync, pipeline, local), kt, dp_async.

Every loop is built from the worker's StageIO, runs to the step budget, then finishes (delivers
what is queued). `testbed.modes` names the loop each mode's worker roles run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from testbed.runtime.stage_io import StageIO


class Loop(Protocol):
    def __init__(self, io: StageIO) -> None: ...

    def run(self, total: int) -> int:
        """Train until `total` steps (or Stop); returns the version reached."""
        ...

    def finish(self, version: int) -> None:
        """Deliver what is queued (final weights to the PS, messages in the outboxes)."""
        ...


class StageLoop:
    """Base of the stage loops: holds the StageIO; finishing pushes the final weights."""

    def __init__(self, io: StageIO) -> None:
        self.io = io

    def finish(self, version: int) -> None:
        self.io.finish(version)
