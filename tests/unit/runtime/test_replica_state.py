"""What a distributed checkpoint holds per stage: the parameter server validates pushed states
against these names, so a part missing here would never reach a checkpoint."""

from __future__ import annotations

import pytest

from testbed.runtime.replica import build_replica, state_specs
from testbed.spec.load import parse_spec


def _replica(algorithm: str):
    return build_replica(parse_spec({
        "name": f"state-{algorithm}",
        "model": {"name": "four-layer", "width": 0.25, "split_after": ["conv1", "fc1"]},
        "algorithm": {"name": algorithm},
        "training": {"batch_size": 8, "iterations": 4, "threads": 1},
        "job": {"mode": algorithm},
    }))  # fmt: skip


@pytest.mark.parametrize(("algorithm", "part"), [("sg", "sg"), ("local", "head")])
def test_each_stage_but_the_last_carries_its_module_and_that_modules_optimizer(
    algorithm: str, part: str
) -> None:
    replica = _replica(algorithm)
    last = len(replica.stages) - 1
    for i in range(len(replica.stages)):
        kinds = {name.split("/")[1] for name in state_specs(replica, i)}
        expected = {"weights", "optimizer"} | ({part, f"{part}_optimizer"} if i < last else set())
        assert kinds - {"sampler"} == expected, (i, kinds)
