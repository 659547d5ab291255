"""Dynamic step assignment (dp-async) on its own: exactly S steps, refused ones handed out again."""

from __future__ import annotations

import pytest

from testbed.runtime.steps import StepTickets, UnknownTicket


def test_exactly_total_steps_are_handed_out_and_applied() -> None:
    tickets = StepTickets(3)
    assert [tickets.take() for _ in range(4)] == [1, 2, 3, 0]
    tickets.settle(2, applied=True)
    assert tickets.take() == 0 and not tickets.done  # 1 and 3 still in flight
    tickets.settle(1, applied=False)  # refused: step 1 is free again
    assert tickets.take() == 1
    tickets.settle(1, applied=True)
    tickets.settle(3, applied=True)
    assert tickets.done and tickets.applied == 3 and tickets.take() == 0


def test_a_worker_that_keeps_finishing_takes_more_steps() -> None:
    """Two workers, one 4x faster: taking the next step when one finishes gives ~4:1."""
    tickets, now, done_at, counts = StepTickets(100), 0.0, {"fast": 0.0, "slow": 0.0}, {}
    step_s = {"fast": 1.0, "slow": 4.0}
    while not tickets.done:
        worker = min(done_at, key=done_at.__getitem__)
        now = done_at[worker]
        ticket = tickets.take()
        if ticket:
            counts[worker] = counts.get(worker, 0) + 1
            tickets.settle(ticket, applied=True)  # finished at now + step_s (settled in order)
            done_at[worker] = now + step_s[worker]
        else:
            done_at[worker] = float("inf")
    assert counts == {"fast": 80, "slow": 20}


def test_unknown_and_repeated_tickets_are_refused() -> None:
    tickets = StepTickets(2)
    with pytest.raises(UnknownTicket, match="ticket: got 1"):
        tickets.settle(1, applied=True)
    t = tickets.take()
    tickets.settle(t, applied=True)
    with pytest.raises(UnknownTicket):
        tickets.settle(t, applied=True)
    with pytest.raises(ValueError, match="total steps: got 0"):
        StepTickets(0)
