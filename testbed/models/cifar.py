"""The heterogeneous-cluster seed paper's five models at CIFAR-10 size (32x32x3, 10 classes).

Dropout layers of the originals are left out (they change accuracy, not the cost of a step).
Parameter counts (at 32x32x3) come from the built stages (Keras `count_params`); the zoo tests
check them against counts worked out by hand from each paper's layer table (docs/devices.md).
"""

from __future__ import annotations

from testbed.models.zoo import (
    FLATTEN,
    Block,
    LayerSpec,
    ModelDef,
    conv,
    dense,
    logits,
    register_model,
)


def _pool(size: int = 2, stride: int | None = None) -> LayerSpec:
    return LayerSpec("pool", activation=None, size=size, stride=stride)


def _fire(squeeze: int, expand: int) -> LayerSpec:
    return LayerSpec("fire", squeeze, expand=expand)


def _residual(filters: int, stride: int = 1) -> LayerSpec:
    return LayerSpec("residual", filters, stride=stride)


GAP = LayerSpec("gap", activation=None)
LRN = LayerSpec("lrn", activation=None)

register_model(ModelDef(
    key="alexnet-cifar",
    description="AlexNet, CIFAR variant (as in bearpaw/pytorch-classification): conv 64@11x11/4, "
    "pool, 192@5x5, pool, 384, 256, 256 @3x3, pool, FC 10; 2.47M parameters",
    blocks=(
        Block("block1", (LayerSpec("conv", 64, 11, stride=4), _pool())),
        Block("block2", (conv(192, 5), _pool())),
        Block("block3", (conv(384),)),
        Block("block4", (conv(256),)),
        Block("block5", (conv(256), _pool())),
        Block("fc", (FLATTEN, logits())),
    ),
    default_split=("block1", "block2", "block4"),
))  # fmt: skip

register_model(ModelDef(
    key="tf-cifar10",
    description="the TensorFlow tutorial's CIFAR-10 convnet: conv 64@5x5, pool 3/2, LRN, "
    "conv 64@5x5, LRN, pool 3/2, FC 384, 192, 10; 1.76M parameters at 32x32",
    blocks=(
        Block("conv1", (conv(64, 5), _pool(3, 2), LRN)),
        Block("conv2", (conv(64, 5), LRN, _pool(3, 2))),
        Block("local3", (FLATTEN, dense(384))),
        Block("local4", (dense(192),)),
        Block("softmax", (logits(),)),
    ),
    default_split=("conv1", "conv2", "local3"),
))  # fmt: skip

register_model(ModelDef(
    key="nin-cifar",
    description="Network in Network (Lin et al., CIFAR-10): 3 mlpconv blocks 192@5x5-160-96, "
    "192@5x5-192-192, 192@3x3-192-10 (1x1s), max/avg pool 3/2, global average pool; 0.97M",
    blocks=(
        Block("block1", (conv(192, 5), conv(160, 1), conv(96, 1), _pool(3, 2))),
        Block("block2", (conv(192, 5), conv(192, 1), conv(192, 1),
                         LayerSpec("avgpool", activation=None, size=3, stride=2))),
        Block("block3", (conv(192), conv(192, 1),
                         LayerSpec("conv", 10, 1, scalable=False), GAP)),
    ),
    default_split=("block1", "block2", "block3_conv1"),
))  # fmt: skip

register_model(ModelDef(
    key="resnet20",
    description="ResNet-20 for CIFAR-10 (He et al. 2016): conv 16@3x3 + BN, 3 stages of 3 basic "
    "blocks (16, 32, 64 filters; option-A shortcuts), global average pool, FC 10; 0.27M",
    blocks=(
        Block("conv1", (LayerSpec("conv", 16, 3, norm=True),)),
        Block("stage1", (_residual(16), _residual(16), _residual(16))),
        Block("stage2", (_residual(32, 2), _residual(32), _residual(32))),
        Block("stage3", (_residual(64, 2), _residual(64), _residual(64))),
        Block("head", (GAP, logits())),
    ),
    default_split=("stage1", "stage2", "stage3"),
))  # fmt: skip

register_model(ModelDef(
    key="squeezenet-cifar",
    description="SqueezeNet (v1.1 layout), CIFAR variant: conv 64@3x3, pool, fire 16/64 x2, pool, "
    "fire 32/128 x2, pool, fire 48/192 x2, 64/256 x2, conv 10@1x1, global average pool; 0.73M",
    blocks=(
        Block("conv1", (conv(64), _pool())),
        Block("fire23", (_fire(16, 64), _fire(16, 64), _pool())),
        Block("fire45", (_fire(32, 128), _fire(32, 128), _pool())),
        Block("fire6789", (_fire(48, 192), _fire(48, 192), _fire(64, 256), _fire(64, 256))),
        Block("conv10", (LayerSpec("conv", 10, 1, scalable=False), GAP)),
    ),
    default_split=("fire23", "fire45", "fire6789"),
))  # fmt: skip

SEED_MODELS = ("alexnet-cifar", "tf-cifar10", "nin-cifar", "resnet20", "squeezenet-cifar")
"""The five models of the heterogeneous-cluster seed paper, in its order."""
