"""The job.wire block and algorithm.sg.target_every: defaults, codecs, and located errors."""

import pytest

from testbed.algorithms.wire_codec import RAW, Codec, wire_codecs
from testbed.spec.errors import SpecError
from testbed.spec.load import parse_spec

BASE = {
    "name": "t",
    "model": {"name": "four-layer"},
    "algorithm": {"name": "sg"},
    "training": {"iterations": 10},
}


def _spec(job=None, algorithm=None):
    return parse_spec({**BASE, "job": job or {}, "algorithm": algorithm or BASE["algorithm"]},
                      "t.yaml")


def test_default_wire_is_raw_fp32_both_ways_and_every_target_is_sent():
    spec = _spec()
    assert wire_codecs(spec.job.wire) == (RAW, RAW) and not spec.job.wire.compressed
    assert spec.algorithm.sg.target_every == 1


def test_codecs_per_direction():
    wire = {"activations": "int8", "gradients": "fp16", "scale": "per-channel", "topk": 0.1}
    spec = _spec({"mode": "sg", "wire": wire})
    assert wire_codecs(spec.job.wire) == (
        Codec("int8", "per-channel"), Codec("fp16", "per-channel", topk=0.1))


@pytest.mark.parametrize(
    ("job", "algorithm", "expected"),
    [
        ({"wire": {"activations": "int4"}}, None,
         r"job\.wire\.activations: got 'int4'; Input should be 'fp32', 'fp16' or 'int8'"),
        ({"wire": {"topk": 0}}, None, r"job\.wire\.topk: got 0; Input should be greater than 0"),
        ({"wire": {"scale": "per-row"}}, None, r"job\.wire\.scale: got 'per-row'"),
        ({"wire": {"gradient": "fp16"}}, None, r"job\.wire\.gradient: unknown field; expected "
                                                r"one of: activations, gradients, scale, topk"),
        ({"mode": "bp-local", "wire": {"activations": "fp16"}}, {"name": "bp"},
         r"job\.wire: compresses stage activations and gradients, but job\.mode 'bp-local'"),
        ({"mode": "dp-async", "wire": {"gradients": "int8"}}, {"name": "bp"}, r"'dp-async'"),
        (None, {"name": "sg", "sg": {"target_every": 0}},
         r"algorithm\.sg\.target_every: got 0; Input should be greater than 0"),
    ],
)
def test_bad_wire_settings_are_located(job, algorithm, expected):
    with pytest.raises(SpecError, match=expected):
        _spec(job, algorithm)


@pytest.mark.parametrize("mode", ["inprocess", "sg", "bp-sync", "bp-pipeline"])
def test_every_mode_with_stage_messages_takes_a_wire(mode):
    algorithm = {"name": "sg" if mode in ("inprocess", "sg") else "bp"}
    assert _spec({"mode": mode, "wire": {"activations": "int8"}}, algorithm).job.wire.compressed
