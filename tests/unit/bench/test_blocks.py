"""The benches balance stages over blocks: the layer profile summed per block."""

import pytest

from testbed.bench.pipeline import blocks_of
from testbed.planner.split_profile import UnitProfile


def test_layer_times_are_summed_per_block_and_the_sg_module_is_the_blocks_last() -> None:
    units = UnitProfile(("conv1_conv1", "conv1_pool", "fc1", "fc2", "fc3"),
                        (0.040, 0.010, 0.020, 0.002, 0.001), (0.009, 0.004, 0.003, 0.001))
    got = blocks_of(units, "four-layer")
    assert got.units == ("conv1", "fc1", "fc2", "fc3")
    assert got.unit_s == pytest.approx((0.050, 0.020, 0.002, 0.001))
    assert got.sg_s == (0.004, 0.003, 0.001)  # after conv1_pool, fc1, fc2
