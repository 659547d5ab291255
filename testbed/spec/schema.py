"""The JSON Schema of spec files (an experiment, a suite or a sweep), for editors to complete.

Generated from the pydantic models, with the registries' keys (models, algorithms, datasets,
device profiles) as enums. `testbed schema -o experiments/spec.schema.json` writes the committed
copy; a test fails when it is stale. In a spec, `# yaml-language-server: $schema=spec.schema.json`
(or VS Code's `yaml.schemas` setting) turns on completion and checking.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic.json_schema import models_json_schema

from testbed.algorithms import ALGORITHMS
from testbed.data import DATASETS
from testbed.emulation.profiles import PROFILES
from testbed.models import MODELS
from testbed.spec.experiment import Spec
from testbed.spec.suite import Suite
from testbed.spec.sweep import Sweep

DRAFT = "https://json-schema.org/draft/2020-12/schema"
_ENUMS = {("ModelCfg", "name"): MODELS, ("AlgorithmCfg", "name"): ALGORITHMS,
          ("DataCfg", "dataset"): DATASETS, ("DeviceSpec", "profile"): PROFILES}


def spec_schema() -> dict[str, Any]:
    """One schema accepting any spec file: anyOf experiment, suite, sweep."""
    refs, top = models_json_schema([(Spec, "validation"), (Suite, "validation"), (Sweep, "validation")],
                                   ref_template="#/$defs/{model}")
    defs = top["$defs"]
    experiment = defs["Spec"]
    experiment["properties"].pop("scale", None)  # set by the loader, never written
    experiment["properties"]["scales"] = {
        "type": "object", "title": "Scales",
        "description": "scale name -> overrides merged into this spec (e.g. smoke: {training: {iterations: 1000}})",
        "additionalProperties": {"type": "object"},
    }
    for (model, field), registry in _ENUMS.items():
        defs[model]["properties"][field]["enum"] = sorted(registry)
    return {
        "$schema": DRAFT,
        "title": "testbed spec file",
        "description": "an experiment, a suite (suite: [names]) or a sweep (sweep: {base, grid})",
        "anyOf": [refs[(m, "validation")] for m in (Spec, Suite, Sweep)],
        "$defs": defs,
    }


def schema_json() -> str:
    return json.dumps(spec_schema(), indent=2, sort_keys=True) + "\n"
