"""Split balancing against literal tables of measured unit times."""

from __future__ import annotations

import pytest

from testbed.planner.balance import balance_split, bounds, stage_times

# four-layer at batch 128, 1 thread (ms): conv1, fc1, fc2, fc3; SG module cost after each split.
FOUR_LAYER = [50.4, 25.7, 1.2, 0.5]
FOUR_LAYER_SG = [22.9, 0.9, 2.9]
# eight-layer at batch 64 (ms): block1, block2, block3, fc1, fc2, fc3.
EIGHT_LAYER = [58.1, 56.6, 13.4, 3.3, 0.7, 0.2]


@pytest.mark.parametrize(
    ("times", "k", "boundary", "splits", "stages"),
    [
        (FOUR_LAYER, 2, None, (0,), (50.4, 27.4)),
        (FOUR_LAYER, 2, FOUR_LAYER_SG, (0,), (73.3, 27.4)),
        (FOUR_LAYER, 4, None, (0, 1, 2), (50.4, 25.7, 1.2, 0.5)),
        (FOUR_LAYER, 1, None, (), (77.8,)),
        (EIGHT_LAYER, 2, None, (0,), (58.1, 74.2)),
        (EIGHT_LAYER, 3, None, (0, 1), (58.1, 56.6, 17.6)),
        (EIGHT_LAYER, 4, None, (0, 1, 2), (58.1, 56.6, 13.4, 4.2)),
        ([1, 1, 1, 1, 1, 1], 3, None, (1, 3), (2, 2, 2)),
        ([5, 1, 1, 1, 1, 1], 2, None, (0,), (5, 5)),
        ([1, 1, 1, 1], 2, [9, 0, 0], (1,), (2, 2)),  # a costly first split point is avoided
    ],
)
def test_balance_split_tables(times, k, boundary, splits, stages) -> None:
    got = balance_split(times, k, boundary)
    assert got.splits == splits
    assert got.stage_times == pytest.approx(stages)


def test_balanced_split_beats_every_other_split_on_a_table() -> None:
    times = [3, 9, 2, 7, 4, 4, 1, 8]
    best = balance_split(times, 3).bottleneck
    every = [
        max(stage_times(times, (i, j)))
        for i in range(len(times) - 2)
        for j in range(i + 1, len(times) - 1)
    ]
    assert best == min(every) == 13


def test_bounds_of_the_four_layer_profile() -> None:
    b = bounds([50.0, 25.0])
    assert b["sequential_it_s"] == pytest.approx(1 / 75)
    assert b["pipeline_it_s"] == pytest.approx(1 / 50)
    assert b["speedup_bound"] == pytest.approx(1.5)


@pytest.mark.parametrize(
    ("times", "k", "boundary", "message"),
    [
        ([1, 2], 3, None, r"stages: got 3, expected 1\.\.2"),
        ([1, 2], 0, None, r"stages: got 0"),
        ([1, -2], 1, None, r"unit times: got -2, expected finite seconds >= 0"),
        ([1, 2, 3], 2, [1.0], r"boundary costs: got 1 values, expected 2"),
        ([1, 2], 2, [float("nan")], r"boundary costs: got nan"),
    ],
)
def test_bad_inputs_are_named(times, k, boundary, message) -> None:
    with pytest.raises(ValueError, match=message):
        balance_split(times, k, boundary)


def test_stage_times_rejects_unordered_splits() -> None:
    with pytest.raises(ValueError, match=r"splits: got \[2, 1\], expected increasing"):
        stage_times([1, 1, 1, 1], (2, 1))
