"""A spec's cluster as the partitioner's devices and links; the planned spec; auto splits."""

import pytest

from testbed.planner.chain_profile import ChainSizes, ChainTimes, chain_of, step_overhead
from testbed.planner.partition import Costs
from testbed.planner.placement import (
    candidate_devices,
    chain_for,
    devices_of,
    pair_links,
    partition_spec,
    planned_spec,
)
from testbed.spec.errors import SpecError
from testbed.spec.load import load_spec, parse_spec

UNITS = ("block1_conv1", "block1_conv2", "block1_pool", "block2_conv1", "block2_conv2",
         "block2_pool", "block3_conv1", "block3_pool", "fc1", "fc2", "fc3")


def _times(unit_ms=(2, 30, 1, 15, 30, 1, 15, 1, 3, 1, 1)):
    return ChainTimes(UNITS, tuple(t / 1e3 for t in unit_ms), tuple([2e-3] * 10), 5e-4, 1e-9)


def _sizes():
    out = (6.4e6, 6.4e6, 1.6e6, 3.2e6, 3.2e6, 0.8e6, 1.6e6, 0.5e6, 66e3, 66e3)
    return ChainSizes(UNITS, out, tuple([1e6] * 11), tuple([1e6] * 10))


def test_devices_take_quota_memory_and_link_from_the_spec():
    spec = load_spec("eight-layer-sg-hetero", "smoke")
    names = candidate_devices(spec)
    devices = {d.name: d for d in devices_of(spec, names)}
    assert names == ["fast", "slow1", "slow2", "slow3"]
    assert [devices[n].speed for n in names] == [1.0, 0.4, 0.25, 0.25]
    assert devices["slow3"].link_bps == 10e6 and devices["slow1"].link_bps == 100e6
    assert devices["fast"].memory_bytes == 2**30
    probed = devices_of(spec, names, link_bps={"slow3": 9.5e6}, speeds={"fast": 0.9})
    assert probed[3].link_bps == 9.5e6 and probed[0].speed == 0.9
    assert pair_links(spec) == []


def test_the_plan_beats_both_baselines_on_the_unequal_cluster():
    spec = load_spec("eight-layer-sg-hetero", "smoke")
    names = candidate_devices(spec)
    costs = Costs(chain_for(spec, _sizes(), _times()), devices_of(spec, names))
    result = partition_spec(costs, len(names))
    assert result.plan.it_s > result.by_time.it_s and result.plan.it_s > result.equal.it_s
    # the 10 Mbit device never receives a multi-MB activation
    last = result.plan.stages[-1]
    assert last.device == "slow3" and costs.chain.out_bytes[last.first - 1] < 1e5
    planned = planned_spec(spec, result.plan, costs.chain)
    assert planned.model.split_after == result.plan.split_after(costs.chain)
    assert planned.placement == {"0": "fast", "1": "slow1", "2": "slow2", "3": "slow3"}


def test_bp_modes_carry_no_sg_module_cost():
    spec = load_spec("eight-layer-sg-hetero", "smoke")
    bp = spec.model_copy(update={"job": spec.job.model_copy(update={"mode": "bp-pipeline"}),
                                 "algorithm": spec.algorithm.model_copy(update={"name": "bp"})})
    assert sum(chain_for(bp, _sizes(), _times()).sg_s) == 0
    assert sum(chain_for(spec, _sizes(), _times()).sg_s) == pytest.approx(0.02)


def test_chain_of_refuses_a_profile_of_another_model():
    with pytest.raises(ValueError, match="do not match"):
        chain_of(_sizes(), ChainTimes(UNITS[:3], (1, 1, 1), (1, 1), 0.0))


def test_step_overhead_from_units_and_whole_model():
    # units add 10, 20, 30 ms; the whole model steps in 62 ms: 2 ms of it is the step's own
    units = [0.01, 0.02, 0.03]
    assert step_overhead(units, whole_s=0.062, call_s=0.0005) == pytest.approx(0.002)
    assert step_overhead(units, whole_s=0.05, call_s=0.0005) == pytest.approx(0.0005)  # clamped


def test_auto_split_needs_a_cluster_and_a_pipeline_mode():
    raw = {"name": "t", "model": {"name": "eight-layer", "split_after": "auto"},
           "algorithm": {"name": "sg"}, "training": {"iterations": 2}, "job": {"mode": "sg"}}
    with pytest.raises(SpecError, match="split_after: auto plans stages over the cluster"):
        parse_spec(raw)
    spec = load_spec("eight-layer-sg-hetero", "smoke")
    assert spec.model.split_after == "auto"
