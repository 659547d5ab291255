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
    with pytest.raises(UnknownKeyError, match="known models: alexnet-cifar, eight-layer, four-layer, mnist-student, nin-cifar, resnet20, squeezenet-cifar, tf-cifar10, vgg16"):
        get_model("resnet")


def test_default_split_is_four_stages_for_every_model():
    for key in MODELS:
        assert len(resolve_split(get_model(key), None)) == 4


def test_any_contiguous_grouping():
    m = get_model("four-layer")
    assert resolve_split(m, ["fc1"]) == [["conv1_conv1", "conv1_pool", "fc1"], ["fc2", "fc3"]]
    assert resolve_split(m, []) == [["conv1_conv1", "conv1_pool", "fc1", "fc2", "fc3"]]


def test_every_layer_is_a_unit_and_a_flatten_joins_the_layer_after_it():
    m = get_model("eight-layer")
    assert m.unit_names() == [
        "block1_conv1", "block1_conv2", "block1_pool", "block2_conv1", "block2_conv2",
        "block2_pool", "block3_conv1", "block3_pool", "fc1", "fc2", "fc3",
    ]  # fmt: skip
    assert [layer.kind for layer in m.units[8].layers] == ["flatten", "dense"]
    vgg = get_model("vgg16")
    assert len(vgg.units) == 13 + 5 + 3  # convs, pools, dense layers


def test_split_points_inside_blocks_and_after_blocks():
    m = get_model("eight-layer")
    groups = resolve_split(m, ["block1_conv1", "block2", "block3_conv1"])
    assert groups == [
        ["block1_conv1"],
        ["block1_conv2", "block1_pool", "block2_conv1", "block2_conv2", "block2_pool"],
        ["block3_conv1"],
        ["block3_pool", "fc1", "fc2", "fc3"],
    ]
    points = m.split_points()
    assert points["block2"] == points["block2_pool"] == 5
    assert "fc3" not in points  # nothing follows the last unit


def test_split_inside_a_block_builds_the_pre_pool_activation():
    stages = build_stages(get_model("eight-layer"), (28, 28, 1), ["block1_conv2", "block3_conv1"])
    assert [s.output_shape for s in stages] == [(28, 28, 32), (7, 7, 128), (10,)]
    assert stages[1].input_shape == (28, 28, 32)


def test_the_same_seed_gives_the_same_weights_whatever_the_split():
    import keras
    import numpy as np

    def weights(split):
        keras.utils.set_random_seed(3)
        stages = build_stages(get_model("four-layer"), (28, 28, 1), split, width=0.25)
        return [w for s in stages for w in s.model.get_weights()]

    a, b = weights(["conv1"]), weights(["conv1_conv1", "fc2"])
    assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize(
    "bad", [["fc3"], ["fc2", "fc1"], ["nope"], ["fc1", "fc1"], ["conv1", "conv1_pool"]]
)
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
