"""The seed's five CIFAR-10 models: parameter counts against each paper's layer table worked out
by hand, logits of the right shape, four default stages."""

from __future__ import annotations

import numpy as np
import pytest

from testbed.models import build_stages, get_model
from testbed.models.cifar import SEED_MODELS


def conv(k: int, cin: int, cout: int, bias: bool = True) -> int:
    return k * k * cin * cout + (cout if bias else 0)


def fire(cin: int, squeeze: int, expand: int) -> int:
    return conv(1, cin, squeeze) + conv(1, squeeze, expand) + conv(3, squeeze, expand)


def residual(cin: int, cout: int) -> int:  # two bias-free convs, two BN (gamma, beta trainable)
    return conv(3, cin, cout, False) + conv(3, cout, cout, False) + 2 * 2 * cout


HAND = {
    # 32 -> /4 stride -> 8 -> pools 4, 2, 1: flatten 256
    "alexnet-cifar": conv(11, 3, 64) + conv(5, 64, 192) + conv(3, 192, 384) + conv(3, 384, 256)
    + conv(3, 256, 256) + (256 * 10 + 10),
    # two 3/2 pools of 32 -> 16 -> 8: flatten 8*8*64
    "tf-cifar10": conv(5, 3, 64) + conv(5, 64, 64) + (8 * 8 * 64 * 384 + 384)
    + (384 * 192 + 192) + (192 * 10 + 10),
    "nin-cifar": conv(5, 3, 192) + conv(1, 192, 160) + conv(1, 160, 96) + conv(5, 96, 192)
    + conv(1, 192, 192) * 2 + conv(3, 192, 192) + conv(1, 192, 192) + conv(1, 192, 10),
    "resnet20": conv(3, 3, 16, False) + 2 * 16 + 3 * residual(16, 16) + residual(16, 32)
    + 2 * residual(32, 32) + residual(32, 64) + 2 * residual(64, 64) + (64 * 10 + 10),
    "squeezenet-cifar": conv(3, 3, 64) + fire(64, 16, 64) + fire(128, 16, 64) + fire(128, 32, 128)
    + fire(256, 32, 128) + fire(256, 48, 192) + fire(384, 48, 192) + fire(384, 64, 256)
    + fire(512, 64, 256) + conv(1, 512, 10),
}


@pytest.mark.parametrize("key", SEED_MODELS)
def test_trainable_parameters_match_the_hand_count(key: str) -> None:
    stages = build_stages(get_model(key), (32, 32, 3))
    trainable = sum(int(np.prod(v.shape)) for s in stages for v in s.model.trainable_variables)
    assert trainable == HAND[key]
    assert len(stages) == 4 and stages[-1].output_shape == (10,)
    assert f"{HAND[key] / 1e6:.2f}M" in get_model(key).description or \
        f"{HAND[key] / 1e6:.1f}M" in get_model(key).description  # fmt: skip


def test_hand_counts_are_the_known_sizes() -> None:
    """ResNet-20 0.27M (He et al. 2016, table 6); NiN about 0.97M; AlexNet-CIFAR 2.47M."""
    assert HAND["resnet20"] == 269_722
    assert round(HAND["alexnet-cifar"] / 1e4) == 247 and round(HAND["nin-cifar"] / 1e4) == 97
