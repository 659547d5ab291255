"""Declarative model definitions: each model is an ordered list of units; split points lie between units."""

from __future__ import annotations

from dataclasses import dataclass

from testbed.registry import Registry


@dataclass(frozen=True)
class LayerSpec:
    """One layer as plain data: kind is conv, pool, flatten or dense."""

    kind: str
    units: int = 0  # filters for conv, width for dense
    kernel: int = 3
    activation: str | None = "relu"
    scalable: bool = True  # False for the logits layer: width multipliers never touch it


@dataclass(frozen=True)
class Unit:
    """A named group of layers; a split point may follow any unit."""

    name: str
    layers: tuple[LayerSpec, ...]


@dataclass(frozen=True)
class ModelDef:
    """A model as ordered units plus its default split (the units after which stages end)."""

    key: str
    description: str
    units: tuple[Unit, ...]
    default_split: tuple[str, ...]

    def unit_names(self) -> list[str]:
        return [u.name for u in self.units]


MODELS: Registry[ModelDef] = Registry("model")


def get_model(key: str) -> ModelDef:
    return MODELS.get(key)


def conv(filters: int, kernel: int = 3) -> LayerSpec:
    return LayerSpec("conv", filters, kernel)


POOL = LayerSpec("pool", activation=None)
FLATTEN = LayerSpec("flatten", activation=None)


def dense(width: int) -> LayerSpec:
    return LayerSpec("dense", width)


def logits(classes: int = 10) -> LayerSpec:
    return LayerSpec("dense", classes, activation=None, scalable=False)


def _block(name: str, *layers: LayerSpec) -> Unit:
    return Unit(name, tuple(layers))


def _register(model: ModelDef) -> None:
    MODELS.register(model.key)(model)


_register(
    ModelDef(
        key="four-layer",
        description="seed paper's 4-layer net: conv 32@5x5 + max-pool, FC 256, FC 256, FC 10",
        units=(
            _block("conv1", conv(32, 5), POOL),
            _block("fc1", FLATTEN, dense(256)),
            _block("fc2", dense(256)),
            _block("fc3", logits()),
        ),
        default_split=("conv1", "fc1", "fc2"),
    )
)

_register(
    ModelDef(
        key="eight-layer",
        description="8-layer net: 5 conv (32,32 | 64,64 | 128, a pool after each block), FC 256, 256, 10",
        units=(
            _block("block1", conv(32), conv(32), POOL),
            _block("block2", conv(64), conv(64), POOL),
            _block("block3", conv(128), POOL),
            _block("fc1", FLATTEN, dense(256)),
            _block("fc2", dense(256)),
            _block("fc3", logits()),
        ),
        default_split=("block1", "block2", "fc1"),
    )
)

_register(
    ModelDef(
        key="vgg16",
        description="VGG16 for 28x28 inputs: 13 conv 3x3 (64->512, doubling after each pool, "
        "'same' pools 28->14->7->4->2->1), FC 512, 512, 10",
        units=(
            _block("block1", conv(64), conv(64), POOL),
            _block("block2", conv(128), conv(128), POOL),
            _block("block3", conv(256), conv(256), conv(256), POOL),
            _block("block4", conv(512), conv(512), conv(512), POOL),
            _block("block5", conv(512), conv(512), conv(512), POOL),
            _block("fc1", FLATTEN, dense(512)),
            _block("fc2", dense(512)),
            _block("fc3", logits()),
        ),
        default_split=("block2", "block4", "fc1"),
    )
)

# Knowledge-transfer students (issue 6): shallower and narrower than their teachers, with section
# boundaries at the same spatial sizes so each student section can mirror one teacher section.
_register(
    ModelDef(
        key="mnist-student",
        description="KT student for a half-width eight-layer: 3 conv (8@5x5 | 16@5x5 | 32@3x3, a "
        "pool after each; one 5x5 conv sees what two 3x3 see), FC 64, 10",
        units=(
            _block("block1", conv(8, 5), POOL),
            _block("block2", conv(16, 5), POOL),
            _block("block3", conv(32), POOL),
            _block("fc1", FLATTEN, dense(64)),
            _block("fc2", logits()),
        ),
        default_split=("block1", "block2", "fc1"),
    )
)

_register(
    ModelDef(
        key="vgg16-student",
        description="KT student for vgg16: 8 conv 3x3 (64 | 128 | 256,256 | 384,384 | 384, a pool "
        "after each block), FC 256, 10",
        units=(
            _block("block1", conv(64), POOL),
            _block("block2", conv(128), POOL),
            _block("block3", conv(256), conv(256), POOL),
            _block("block4", conv(384), conv(384), POOL),
            _block("block5", conv(384), POOL),
            _block("fc1", FLATTEN, dense(256)),
            _block("fc2", logits()),
        ),
        default_split=("block2", "block4", "fc1"),
    )
)
