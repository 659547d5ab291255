"""Dynamic step assignment (dp-async, as in the seed): a fixed total of S steps handed out one at
a time, so a worker that finishes a step takes the next remaining one and a fast device does more.

Pure bookkeeping; the parameter server calls it under its lock. A step whose gradients are
refused (too stale) goes back to the pool, so exactly S steps are applied.
"""

from __future__ import annotations


class UnknownTicket(ValueError):
    """Gradients came back for a step that was never handed out, or was settled already."""


class StepTickets:
    """Tickets 1..S: `take` hands one out (0: none free now), `settle` applies or returns it."""

    def __init__(self, total: int) -> None:
        if total < 1:
            raise ValueError(f"total steps: got {total}; expected >= 1")
        self.total = total
        self.applied = 0
        self.outstanding: set[int] = set()
        self._returned: list[int] = []
        self._next = 1

    @property
    def done(self) -> bool:
        return self.applied >= self.total

    def take(self) -> int:
        """The next free step, or 0 when every remaining step is applied or in flight."""
        if self.applied + len(self.outstanding) >= self.total:
            return 0
        if self._returned:
            ticket = self._returned.pop()
        else:
            ticket, self._next = self._next, self._next + 1
        self.outstanding.add(ticket)
        return ticket

    def resume(self, applied: int) -> None:
        """Continue from a checkpoint: steps 1..`applied` are done, none is in flight."""
        if not 0 <= applied <= self.total:
            raise ValueError(f"applied steps: got {applied}; expected 0..{self.total}")
        self.applied, self._next = applied, applied + 1
        self.outstanding.clear()
        self._returned.clear()

    def settle(self, ticket: int, applied: bool) -> None:
        """The step's gradients were applied, or refused (the step is free again)."""
        if ticket not in self.outstanding:
            raise UnknownTicket(
                f"ticket: got {ticket}; expected one of the steps in flight "
                f"{sorted(self.outstanding)[:10]}"
            )
        self.outstanding.remove(ticket)
        if applied:
            self.applied += 1
        else:
            self._returned.append(ticket)
