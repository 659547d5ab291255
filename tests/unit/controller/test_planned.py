"""The run a plan's pick becomes: its devices and links, one replica each, the server placed."""

from __future__ import annotations

from testbed.controller.planned import remaining_steps, spec_for
from testbed.planner.cluster import Config
from testbed.spec.load import load_spec


def test_a_picked_configuration_becomes_a_dp_async_spec() -> None:
    spec = load_spec("planner-seed", "smoke")
    both = spec_for(spec, Config(("desktop", "tx1"), "desktop"), 100)
    assert [d.name for d in both.cluster.devices] == ["desktop", "tx1"]
    assert sorted(link.device for link in both.cluster.links) == ["desktop", "tx1"]
    assert both.placement == {"ps": "desktop", "replica0": "desktop", "replica1": "tx1"}
    assert (both.job.mode, both.job.replicas, both.training.iterations) == ("dp-async", 2, 100)
    assert both.planner is None  # the picked run does not plan again


def test_one_device_runs_without_its_link_and_the_rest_follows_profiling() -> None:
    spec = load_spec("planner-seed", "smoke")  # 160 steps, profiling 5 + 20 + 5
    alone = spec_for(spec, Config(("tx1",), "tx1"), 40)
    assert [d.name for d in alone.cluster.devices] == ["tx1"] and alone.cluster.links == []
    assert remaining_steps(spec) == 130


def test_a_plan_record_reads_back_to_the_profiling_it_was_made_from() -> None:
    import json

    from testbed.controller.planned import plan_record, profiling_from_record
    from testbed.planner.cluster import DeviceProfile, Links, PowerFit
    from testbed.planner.profiling import Profiling
    from testbed.planner.ranking import make_plan

    fast = DeviceProfile("a", 1.0, 0.2, 0.18, 0.01, 9.0, {"worker": 4.0, "ps": 5.0},
                         PowerFit(10.0, 60.0, 0.0, 1e-9, 0.5), first_step_s=1.5)
    slow = DeviceProfile("b", 0.3, 0.7, 0.2, 0.01, 30.0, {"worker": 4.5, "ps": 5.5},
                         PowerFit(2.0, 8.0), first_step_s=6.0, peak_memory_bytes=7)
    made = Profiling({"a": fast, "b": slow}, Links({"a": 9.5e6, "b": None}, latency_s=0.002),
                     4_000_000, 3_900_000, 42.0, {"a": "profile-a/x"}, ["a note"])
    plan = make_plan(made.profiles, made.links, made.workload(30), "energy")
    back = profiling_from_record(json.loads(json.dumps(plan_record(plan, made))))
    assert back == made
    again = make_plan(back.profiles, back.links, back.workload(30), "energy")
    assert [e.as_dict() for e in again.ranked] == [e.as_dict() for e in plan.ranked]
