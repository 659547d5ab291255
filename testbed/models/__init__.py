"""Model zoo: models as ordered units with split points, grouped into stages."""

from testbed.models.stages import Stage, build_stages, resolve_split
from testbed.models.zoo import MODELS, LayerSpec, ModelDef, Unit, get_model

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
