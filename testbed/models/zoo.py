"""Declarative model definitions: ordered blocks of layers; a split point lies between any two layers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

from testbed.registry import Registry


@dataclass(frozen=True)
class LayerSpec:
    """One layer as plain data. kind: conv, pool (max), avgpool, gap (global average), lrn,
    flatten, dense, residual (a ResNet basic block of `units` filters), fire (SqueezeNet: `units`
    squeeze, `expand` per expand branch)."""

    kind: str
    units: int = 0  # filters for conv and residual, width for dense, squeeze for fire
    kernel: int = 3
    activation: str | None = "relu"
    scalable: bool = True  # False for the logits layer: width multipliers never touch it
    stride: int | None = None  # conv/residual: 1; pools: their size
    size: int = 2  # pool window
    expand: int = 0  # fire: filters of each expand branch
    norm: bool = False  # conv: batch-normalised before its activation (no bias)


@dataclass(frozen=True)
class Block:
    """A named group of layers as the papers draw the model (block1, fc1); its name stays a split
    point: after its last layer."""

    name: str
    layers: tuple[LayerSpec, ...]


@dataclass(frozen=True)
class Unit:
    """The finest piece a stage starts or ends at: one layer (a flatten joins the layer after it).

    Every boundary between units is a legal split point; a unit is named after its block
    (`block1_conv2`, `block1_pool`), or is the block itself when the block is one layer (`fc2`).
    """

    name: str
    layers: tuple[LayerSpec, ...]
    block: str


def block_units(block: Block) -> tuple[Unit, ...]:
    """The block's layers as units: one per layer, a flatten joined to the layer after it."""
    groups: list[list[LayerSpec]] = []
    pending: list[LayerSpec] = []
    for layer in block.layers:
        pending.append(layer)
        if layer.kind != "flatten":
            groups.append(pending)
            pending = []
    if pending and groups:  # a trailing flatten belongs to the layer before it
        groups[-1].extend(pending)
    elif pending:
        groups.append(pending)
    if len(groups) == 1:
        return (Unit(block.name, tuple(groups[0]), block.name),)
    kinds = [g[-1].kind for g in groups]
    seen: dict[str, int] = {}
    units = []
    for kind, group in zip(kinds, groups, strict=True):
        seen[kind] = seen.get(kind, 0) + 1
        numbered = kind != "pool" or kinds.count("pool") > 1
        suffix = f"{kind}{seen[kind]}" if numbered else kind
        units.append(Unit(f"{block.name}_{suffix}", tuple(group), block.name))
    return tuple(units)


@dataclass(frozen=True)
class ModelDef:
    """A model as ordered blocks of layers plus its default split (the blocks or units after
    which stages end). Its units (one per layer) are what stages are made of."""

    key: str
    description: str
    blocks: tuple[Block | Unit, ...]
    default_split: tuple[str, ...]

    @cached_property
    def units(self) -> tuple[Unit, ...]:
        return tuple(u for b in self.blocks for u in block_units(Block(b.name, b.layers)))

    def unit_names(self) -> list[str]:
        return [u.name for u in self.units]

    def weight_counts(self) -> list[int]:
        """Weights per unit in Keras' get_weights order (kernel and bias per conv or dense)."""
        return [sum(2 for layer in u.layers if layer.kind in ("conv", "dense")) for u in self.units]

    def split_points(self) -> dict[str, int]:
        """Every legal split point -> the index of the unit it follows: each unit but the last,
        and each block but the last by its name (after the block's last unit)."""
        points = {u.name: i for i, u in enumerate(self.units)}
        for i, u in enumerate(self.units):
            points[u.block] = i  # the block's last unit wins
        last = len(self.units) - 1
        return {name: i for name, i in points.items() if i < last}


MODELS: Registry[ModelDef] = Registry("model")


def get_model(key: str) -> ModelDef:
    return MODELS.get(key)


def resolve_split(model: ModelDef, split_after: Sequence[str] | None) -> list[list[str]]:
    """Group the model's units into stages that end after each named split point, in order.

    A split point is a unit (`block1_conv1`: inside a block) or a block (`block1`: after it)."""
    if split_after == "auto":
        raise ValueError(f"split_after 'auto' for {model.key} is planned before stages are "
                         "built (testbed plan, or a distributed run over a cluster)")
    names, points = model.unit_names(), model.split_points()
    split = list(model.default_split if split_after is None else split_after)
    unknown = [s for s in split if s not in points]
    if unknown:
        raise ValueError(
            f"split point {unknown[0]!r} is not a split point of {model.key}; expected unit or "
            f"block names in model order, from {list(points)}"
        )
    positions = [points[s] for s in split]
    if positions != sorted(set(positions)):
        raise ValueError(
            f"split points {split} must be distinct and in model order (units {names[:-1]})"
        )
    return groups_of(names, positions)


def groups_of(names: Sequence[str], ends: Sequence[int]) -> list[list[str]]:
    """Consecutive groups of `names`, each ending at one of `ends` (indices), then the rest."""
    groups, start = [], 0
    for pos in [*ends, len(names) - 1]:
        groups.append(list(names[start : pos + 1]))
        start = pos + 1
    return groups


def conv(filters: int, kernel: int = 3) -> LayerSpec:
    return LayerSpec("conv", filters, kernel)


POOL = LayerSpec("pool", activation=None)
FLATTEN = LayerSpec("flatten", activation=None)


def dense(width: int) -> LayerSpec:
    return LayerSpec("dense", width)


def logits(classes: int = 10) -> LayerSpec:
    return LayerSpec("dense", classes, activation=None, scalable=False)


def _block(name: str, *layers: LayerSpec) -> Block:
    return Block(name, tuple(layers))


def register_model(model: ModelDef) -> ModelDef:
    return MODELS.register(model.key)(model)


_register = register_model


_register(
    ModelDef(
        key="four-layer",
        description="seed paper's 4-layer net: conv 32@5x5 + max-pool, FC 256, FC 256, FC 10",
        blocks=(
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
        blocks=(
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
        blocks=(
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
        blocks=(
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
        blocks=(
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

