"""Model zoo: models as ordered units with split points, grouped into stages.

The zoo (definitions, registry, splits) is plain data and imports no TensorFlow, so specs
validate and the CLI answers without it; `Stage` and `build_stages` load Keras on first use.
"""

from typing import Any

from testbed.models import cifar as _cifar  # noqa: F401  (registers the CIFAR-10 models in MODELS)
from testbed.models.zoo import MODELS, LayerSpec, ModelDef, Unit, get_model, resolve_split

_KERAS_NAMES = ("Stage", "build_stages")

__all__ = [
    "MODELS",
    "LayerSpec",
    "ModelDef",
    "Stage",
    "Unit",
    "build_stages",
    "get_model",
    "resolve_split",
]


def __getattr__(name: str) -> Any:
    if name in _KERAS_NAMES:
        from testbed.models import stages

        return getattr(stages, name)
    raise AttributeError(f"module 'testbed.models' has no attribute {name!r}")
