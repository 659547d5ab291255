"""Parameter-server messages (one stage's weights, the whole model, evaluations, status) to and from
dataclasses."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from testbed.runtime.wire.proto import parameter_pb2
from testbed.runtime.wire.serde import Weights
from testbed.runtime.wire.tensors import (
    DEFAULT_MAX_TENSOR_BYTES,
    MessageValidationError,
    TensorSpec,
    fill_tensor,
    from_message,
)


def weights_to_message(weights: Weights) -> parameter_pb2.WeightSet:
    """Encode a stage's weights, preserving their order."""
    msg = parameter_pb2.WeightSet(stage_id=weights.stage_id, version=weights.version,
                                  split_epoch=weights.split_epoch,
                                  sg_boundary=weights.sg_boundary)
    for name, arr in weights.tensors.items():
        fill_tensor(msg.tensors.add(name=name).tensor, arr, f"WeightSet.tensors[{name}]")
    return msg


def weights_from_message(
    msg: parameter_pb2.WeightSet,
    expected: Mapping[str, TensorSpec] | None = None,
    max_bytes: int = DEFAULT_MAX_TENSOR_BYTES,
) -> Weights:
    """Decode a WeightSet; names must be unique, non-empty and, if given, expected's keys."""
    tensors: dict[str, np.ndarray] = {}
    for i, named in enumerate(msg.tensors):
        field = f"WeightSet.tensors[{i}]"
        if not named.name or named.name in tensors:
            raise MessageValidationError(
                f"{field}.name: got {named.name!r}, expected a unique name"
            )
        spec = None if expected is None else expected.get(named.name)
        if expected is not None and spec is None:
            raise MessageValidationError(
                f"{field}.name: got {named.name!r}, expected one of {sorted(expected)}"
            )
        tensors[named.name] = from_message(named.tensor, spec, max_bytes, f"{field}.tensor")
    if expected is not None and tensors.keys() != expected.keys():
        missing = sorted(expected.keys() - tensors.keys())
        raise MessageValidationError(f"WeightSet.tensors: missing {missing}, expected all of them")
    boundary = msg.sg_boundary if msg.HasField("sg_boundary") else None
    return Weights(stage_id=msg.stage_id, version=msg.version, tensors=tensors,
                   split_epoch=msg.split_epoch, sg_boundary=boundary)


@dataclass(frozen=True, eq=False)
class ModelWeights:
    """Every stage at one version; in dp-async pushes, the tensors are gradients.

    `ticket`: the step (1..S) the server handed out with these weights (dynamic step assignment);
    0 in a reply that hands out none.
    """

    version: int
    stages: tuple[Weights, ...]
    ticket: int = 0


@dataclass(frozen=True)
class Evaluation:
    """Test accuracy of the global weights at one step."""

    step: int
    test_accuracy: float
    wall_s: float  # when the evaluation ended
    ready_s: float = 0.0  # when the version was complete on the server (seconds since t0)


@dataclass(frozen=True)
class ParameterStatus:
    """What the parameter server holds: newest complete version, evaluations so far."""

    version: int
    evaluations: tuple[Evaluation, ...]
    stale_gradients: int = 0


def model_to_message(model: ModelWeights) -> parameter_pb2.ModelWeights:
    """Encode every stage's tensors."""
    stages = [weights_to_message(w) for w in model.stages]
    return parameter_pb2.ModelWeights(version=model.version, stages=stages, ticket=model.ticket)


def model_from_message(
    msg: parameter_pb2.ModelWeights,
    expected: Sequence[Mapping[str, TensorSpec]],
    max_bytes: int = DEFAULT_MAX_TENSOR_BYTES,
) -> ModelWeights:
    """Decode and validate: exactly one WeightSet per stage, in stage order, matching `expected`."""
    ids = [s.stage_id for s in msg.stages]
    if ids != list(range(len(expected))):
        raise MessageValidationError(
            f"ModelWeights.stages: got stage ids {ids}, expected {list(range(len(expected)))}"
        )
    stages = tuple(
        weights_from_message(s, spec, max_bytes)
        for s, spec in zip(msg.stages, expected, strict=True)
    )
    return ModelWeights(msg.version, stages, msg.ticket)


def status_to_message(status: ParameterStatus) -> parameter_pb2.ParameterStatus:
    """Encode the server's status."""
    evals = [
        parameter_pb2.Evaluation(
            step=e.step, test_accuracy=e.test_accuracy, wall_s=e.wall_s, ready_s=e.ready_s
        )
        for e in status.evaluations
    ]
    return parameter_pb2.ParameterStatus(
        version=status.version, evaluations=evals, stale_gradients=status.stale_gradients
    )


def status_from_message(msg: parameter_pb2.ParameterStatus) -> ParameterStatus:
    """Decode the server's status."""
    evals = tuple(
        Evaluation(e.step, e.test_accuracy, e.wall_s, e.ready_s) for e in msg.evaluations
    )
    return ParameterStatus(msg.version, evals, msg.stale_gradients)
