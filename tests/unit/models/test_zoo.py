"""Model zoo: unit structure, split resolution, stage shapes."""

import pytest

from testbed.models import MODELS, build_stages, get_model, resolve_split
from testbed.registry import UnknownKeyError


def _count(model, kind):
    return sum(1 for u in model.units for layer in u.layers if layer.kind == kind)


@pytest.mark.parametrize(("key", "convs", "dense"), [("four-layer", 1, 3), ("eight-layer", 5, 3), ("vgg16", 13, 3)])
def test_layer_counts(key, convs, dense):
    m = get_model(key)
    assert (_count(m, "conv"), _count(m, "dense")) == (convs, dense)


def test_vgg16_filters_double_after_each_pool():
    filters = [layer.units for u in get_model("vgg16").units for layer in u.layers if layer.kind == "conv"]
    assert filters == [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]


def test_unknown_model_lists_known_keys():
    with pytest.raises(UnknownKeyError, match="known models: eight-layer, four-layer, mnist-student, vgg16"):
        get_model("resnet")


def test_default_split_is_four_stages_for_every_model():
    for key in MODELS:
        assert len(resolve_split(get_model(key), None)) == 4


def test_any_contiguous_grouping():
    m = get_model("four-layer")
    assert resolve_split(m, ["fc1"]) == [["conv1", "fc1"], ["fc2", "fc3"]]
    assert resolve_split(m, []) == [["conv1", "fc1", "fc2", "fc3"]]


@pytest.mark.parametrize("bad", [["fc3"], ["fc2", "fc1"], ["nope"], ["fc1", "fc1"]])
def test_bad_split_points_are_rejected(bad):
    with pytest.raises(ValueError, match="split point"):
        resolve_split(get_model("four-layer"), bad)


def test_four_layer_stage_shapes():
    stages = build_stages(get_model("four-layer"), (28, 28, 1))
    assert [s.output_shape for s in stages] == [(14, 14, 32), (256,), (256,), (10,)]
    assert stages[1].input_shape == (14, 14, 32)


def test_width_multiplier_scales_hidden_layers_not_logits():
    stages = build_stages(get_model("eight-layer"), (28, 28, 1), width=0.5)
    assert stages[0].output_shape == (14, 14, 16)
    assert stages[-1].output_shape == (10,)
