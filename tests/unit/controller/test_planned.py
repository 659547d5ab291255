"""The run a plan's pick becomes: its devices and links, one replica each, the server placed."""

from __future__ import annotations

from testbed.controller.planned import remaining_steps, spec_for
from testbed.planner.cluster import Config
from testbed.spec.experiment import load_spec


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
