"""Parameter-server messages (whole-model weights, evaluations, status) to and from dataclasses."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from testbed.runtime.proto import parameter_pb2
from testbed.runtime.serde import (
    DEFAULT_MAX_TENSOR_BYTES,
    MessageValidationError,
    TensorSpec,
    Weights,
    weights_from_message,
    weights_to_message,
)


@dataclass(frozen=True, eq=False)
class ModelWeights:
    """Every stage at one version; in dp-async pushes, the tensors are gradients."""

    version: int
    stages: tuple[Weights, ...]


@dataclass(frozen=True)
class Evaluation:
    """Test accuracy of the global weights at one step."""

    step: int
    test_accuracy: float
    wall_s: float


@dataclass(frozen=True)
class ParameterStatus:
    """What the parameter server holds: newest complete version, evaluations so far."""

    version: int
    evaluations: tuple[Evaluation, ...]
    stale_gradients: int = 0


def model_to_message(model: ModelWeights) -> parameter_pb2.ModelWeights:
    """Encode every stage's tensors."""
    stages = [weights_to_message(w) for w in model.stages]
    return parameter_pb2.ModelWeights(version=model.version, stages=stages)


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
    return ModelWeights(msg.version, stages)


def status_to_message(status: ParameterStatus) -> parameter_pb2.ParameterStatus:
    """Encode the server's status."""
    evals = [
        parameter_pb2.Evaluation(step=e.step, test_accuracy=e.test_accuracy, wall_s=e.wall_s)
        for e in status.evaluations
    ]
    return parameter_pb2.ParameterStatus(
        version=status.version, evaluations=evals, stale_gradients=status.stale_gradients
    )


def status_from_message(msg: parameter_pb2.ParameterStatus) -> ParameterStatus:
    """Decode the server's status."""
    evals = tuple(Evaluation(e.step, e.test_accuracy, e.wall_s) for e in msg.evaluations)
    return ParameterStatus(msg.version, evals, msg.stale_gradients)
