"""The partitioner: DP against exhaustive search and hand-computed literal tables."""

import random

import pytest

from testbed.planner.partition import (
    Chain,
    Costs,
    Device,
    PairLink,
    PartitionError,
    balance_by_time,
    equal_units,
    exhaustive,
    partition,
)

MBIT = 1e6


def _chain(unit_s, out_bytes, **kw):
    return Chain(tuple(f"u{i}" for i in range(len(unit_s))), tuple(unit_s), tuple(out_bytes), **kw)


def test_equal_devices_and_free_links_balance_the_unit_times():
    chain = _chain([2, 2, 2, 3, 3], [0] * 4)
    costs = Costs(chain, [Device("a"), Device("b"), Device("c")])
    plan = partition(costs, stages=3)
    # hand: [2 2] | [2 3] | [3] -> 4, 5, 3; every other 3-split has a stage >= 6
    assert plan.ends == (1, 3)
    assert [s.time_s for s in plan.stages] == [4, 5, 3]


def test_a_slow_link_is_not_crossed_by_the_big_activation():
    # u1's output is 10 MB, the others' 1 kB; device b sits behind 10 Mbit
    chain = _chain([1, 1, 1, 1], [1e3, 1e7, 1e3])
    costs = Costs(chain, [Device("a"), Device("b", link_bps=10 * MBIT)])
    by_time = balance_by_time(costs, 2)
    assert by_time.ends == (1,)  # balanced [2, 2] but 10 MB over 10 Mbit: 8 s per step
    assert by_time.bottleneck_s == pytest.approx(1e7 * 8 / 10e6)
    best = partition(costs, stages=2)
    assert best.ends in ((0,), (2,))  # the split avoids the 10 MB boundary
    assert best.bottleneck_s == pytest.approx(3.0)  # 3 units on one device; 1 kB is 0.8 ms
    assert best.bottleneck_s == exhaustive(costs, stages=2).bottleneck_s


def test_a_fast_device_takes_more_units():
    chain = _chain([1.0] * 8, [0] * 7)
    costs = Costs(chain, [Device("slow", speed=1.0), Device("fast", speed=4.0)])
    plan = partition(costs, stages=2)
    # slow first: 1 unit (1 s) then 7 on fast (1.75 s); 2 on slow would be 2 s
    assert plan.devices == ("slow", "fast")
    assert [s.last - s.first + 1 for s in plan.stages] == [1, 7]
    assert plan.bottleneck_s == pytest.approx(1.75)
    assert equal_units(costs, 2).bottleneck_s == pytest.approx(4.0)  # 4 units on slow


def test_free_order_puts_the_fast_device_where_the_work_is():
    chain = _chain([4, 1, 1, 1], [0] * 3)
    devices = [Device("slow"), Device("fast", speed=4.0)]
    fixed = partition(Costs(chain, devices), stages=2)
    free = partition(Costs(chain, devices), stages=2, order="free")
    assert fixed.bottleneck_s == pytest.approx(4.0)  # slow must take u0 (4 s)
    # fast takes u0..u2 (6 / 4 = 1.5 s), slow u3 (1 s)
    assert free.devices == ("fast", "slow") and free.bottleneck_s == pytest.approx(1.5)


def test_access_link_carries_both_boundaries_and_latency():
    chain = _chain([0, 0, 0], [1e6, 2e6])
    costs = Costs(chain, [Device("a"), Device("b", link_bps=8 * MBIT, latency_s=0.01),
                          Device("c")])
    middle = costs.stage("b", 1, 1)
    # uplink: 2 MB forward + 1 MB gradient back = 3 MB at 1 MB/s, 2 messages x 10 ms
    assert middle.link_s == pytest.approx(3.0 + 0.02)


def test_pair_link_bounds_the_pipeline():
    chain = _chain([1, 1], [1e6])
    costs = Costs(chain, [Device("a"), Device("b")], [PairLink("b", "a", 1 * MBIT)])
    plan = costs.plan(["a", "b"], [0])
    assert plan.pair_s == (pytest.approx(8.0),)
    assert plan.bottleneck_s == pytest.approx(8.0)
    assert partition(costs).bottleneck_s == pytest.approx(2.0)  # one stage avoids the link


def test_wire_cpu_and_sg_module_and_stage_overhead_count_as_compute():
    chain = _chain([1, 1], [100], sg_s=(0.5,), stage_s=0.1, wire_s_per_byte=0.001)
    costs = Costs(chain, [Device("a", speed=2.0), Device("b")])
    first = costs.stage("a", 0, 0)
    # (1 + 0.5 SG + 0.1 overhead + 2 x 100 B x 1 ms) / speed 2
    assert first.compute_s == pytest.approx((1 + 0.5 + 0.1 + 0.2) / 2)
    last = costs.stage("b", 1, 1)
    assert last.compute_s == pytest.approx(1 + 0.1 + 0.2)


def test_measured_device_times_replace_the_scaled_reference():
    chain = _chain([1, 1, 1], [0, 0], sg_s=(1, 1))
    d = Device("m", speed=10.0, unit_s=(2.0, 3.0, 4.0), sg_s=(0.5, 0.25))
    costs = Costs(chain, [d])
    assert costs.stage("m", 0, 1).compute_s == pytest.approx(2 + 3 + 0.25)


def test_memory_caps_are_respected():
    chain = _chain([1, 1, 1, 1], [0] * 3, memory_bytes=(10, 10, 10, 40), stage_memory_bytes=5)
    costs = Costs(chain, [Device("small", memory_bytes=20), Device("big", memory_bytes=70)])
    free = Costs(_chain([1, 1, 1, 1], [0] * 3), [Device("small"), Device("big")])
    assert partition(free, stages=2).bottleneck_s == 2  # [u0 u1] | [u2 u3] without caps
    plan = partition(costs, stages=2)
    # small holds one unit at most (10 + 5); big then holds the rest (65 of 70)
    assert plan.ends == (0,) and plan.bottleneck_s == 3
    assert [s.memory_bytes for s in plan.stages] == [15, 65]
    assert exhaustive(costs, stages=2).bottleneck_s == 3


def test_impossible_memory_gives_a_clear_error():
    chain = _chain([1, 1], [0], memory_bytes=(3 * 2**20, 2**20))
    devices = [Device("a", memory_bytes=2 * 2**20), Device("b", memory_bytes=2 * 2**20)]
    with pytest.raises(PartitionError, match=r"unit 'u0' needs 3\.0 MiB .*\{a: 2 MiB, b: 2 MiB\}"):
        partition(Costs(chain, devices))
    with pytest.raises(PartitionError, match="unit 'u0' needs"):
        exhaustive(Costs(chain, devices))
    # each unit fits alone, but one device cannot hold both
    both = _chain([1, 1], [0], memory_bytes=(2**20, 2**20))
    with pytest.raises(PartitionError, match=r"no split of 2 units into 1\.\.1 stages fits"):
        partition(Costs(both, [Device("a", memory_bytes=1.5 * 2**20)]))


def test_bad_inputs_name_the_value():
    with pytest.raises(PartitionError, match=r"chain\.out_bytes: got 1 values, expected 2"):
        _chain([1, 1, 1], [0])
    with pytest.raises(PartitionError, match="speed"):
        Device("x", speed=0)
    with pytest.raises(PartitionError, match=r"stages: got 3, expected 1\.\.2"):
        partition(Costs(_chain([1, 1], [0]), [Device("a"), Device("b")]), stages=3)


def test_equal_units_gives_the_remainder_to_the_first_stages():
    costs = Costs(_chain([1] * 8, [0] * 7), [Device(c) for c in "abc"])
    assert [s.last - s.first + 1 for s in equal_units(costs, 3).stages] == [3, 3, 2]


def _random_costs(rng: random.Random):
    n, d = rng.randint(1, 7), rng.randint(1, 4)
    chain = _chain(
        [rng.choice([0.0, rng.uniform(0, 2)]) for _ in range(n)],
        [rng.choice([1e3, 1e5, 1e6, 1e7]) for _ in range(n - 1)],
        sg_s=tuple(rng.uniform(0, 0.3) for _ in range(n - 1)),
        memory_bytes=tuple(rng.uniform(0, 10) for _ in range(n)),
        stage_s=rng.uniform(0, 0.1), wire_s_per_byte=rng.choice([0, 1e-8]),
    )
    devices = [
        Device(f"d{k}", speed=rng.choice([0.25, 0.5, 1.0, 2.0]),
               memory_bytes=rng.choice([None, 12.0, 25.0]),
               link_bps=rng.choice([None, 10 * MBIT, 100 * MBIT, 1000 * MBIT]),
               latency_s=rng.choice([0.0, 0.005]))
        for k in range(d)
    ]
    pairs = []
    if d >= 2 and rng.random() < 0.5:
        a, b = rng.sample([x.name for x in devices], 2)
        pairs.append(PairLink(a, b, rng.choice([1, 10]) * MBIT, 0.001))
    return Costs(chain, devices, pairs)


@pytest.mark.parametrize("order", ["fixed", "free"])
def test_dp_matches_exhaustive_search_on_random_small_chains(order):
    rng = random.Random(16)
    checked = 0
    for _ in range(300):
        costs = _random_costs(rng)
        stages = rng.choice([None, *range(1, min(costs.chain.n, len(costs.order)) + 1)])
        try:
            ref = exhaustive(costs, stages, order)
        except PartitionError:
            with pytest.raises(PartitionError):
                partition(costs, stages, order)
            continue
        got = partition(costs, stages, order)
        assert got.bottleneck_s == pytest.approx(ref.bottleneck_s, rel=1e-12, abs=1e-15)
        assert costs.feasible(got)
        if stages is not None:
            assert len(got.stages) == stages
        checked += 1
    assert checked > 200
