from testbed.runtime.wire.proto import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class NamedTensor(_message.Message):
    __slots__ = ("name", "tensor")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TENSOR_FIELD_NUMBER: _ClassVar[int]
    name: str
    tensor: _common_pb2.Tensor
    def __init__(self, name: _Optional[str] = ..., tensor: _Optional[_Union[_common_pb2.Tensor, _Mapping]] = ...) -> None: ...

class WeightSet(_message.Message):
    __slots__ = ("stage_id", "version", "tensors", "split_epoch", "sg_boundary")
    STAGE_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TENSORS_FIELD_NUMBER: _ClassVar[int]
    SPLIT_EPOCH_FIELD_NUMBER: _ClassVar[int]
    SG_BOUNDARY_FIELD_NUMBER: _ClassVar[int]
    stage_id: int
    version: int
    tensors: _containers.RepeatedCompositeFieldContainer[NamedTensor]
    split_epoch: int
    sg_boundary: int
    def __init__(self, stage_id: _Optional[int] = ..., version: _Optional[int] = ..., tensors: _Optional[_Iterable[_Union[NamedTensor, _Mapping]]] = ..., split_epoch: _Optional[int] = ..., sg_boundary: _Optional[int] = ...) -> None: ...

class PullRequest(_message.Message):
    __slots__ = ("stage_id", "min_version", "split_epoch", "sg_boundary")
    STAGE_ID_FIELD_NUMBER: _ClassVar[int]
    MIN_VERSION_FIELD_NUMBER: _ClassVar[int]
    SPLIT_EPOCH_FIELD_NUMBER: _ClassVar[int]
    SG_BOUNDARY_FIELD_NUMBER: _ClassVar[int]
    stage_id: int
    min_version: int
    split_epoch: int
    sg_boundary: int
    def __init__(self, stage_id: _Optional[int] = ..., min_version: _Optional[int] = ..., split_epoch: _Optional[int] = ..., sg_boundary: _Optional[int] = ...) -> None: ...

class ModelWeights(_message.Message):
    __slots__ = ("version", "stages", "ticket")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    TICKET_FIELD_NUMBER: _ClassVar[int]
    version: int
    stages: _containers.RepeatedCompositeFieldContainer[WeightSet]
    ticket: int
    def __init__(self, version: _Optional[int] = ..., stages: _Optional[_Iterable[_Union[WeightSet, _Mapping]]] = ..., ticket: _Optional[int] = ...) -> None: ...

class Evaluation(_message.Message):
    __slots__ = ("step", "test_accuracy", "wall_s", "ready_s")
    STEP_FIELD_NUMBER: _ClassVar[int]
    TEST_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    WALL_S_FIELD_NUMBER: _ClassVar[int]
    READY_S_FIELD_NUMBER: _ClassVar[int]
    step: int
    test_accuracy: float
    wall_s: float
    ready_s: float
    def __init__(self, step: _Optional[int] = ..., test_accuracy: _Optional[float] = ..., wall_s: _Optional[float] = ..., ready_s: _Optional[float] = ...) -> None: ...

class ParameterStatus(_message.Message):
    __slots__ = ("version", "evaluations", "stale_gradients")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    EVALUATIONS_FIELD_NUMBER: _ClassVar[int]
    STALE_GRADIENTS_FIELD_NUMBER: _ClassVar[int]
    version: int
    evaluations: _containers.RepeatedCompositeFieldContainer[Evaluation]
    stale_gradients: int
    def __init__(self, version: _Optional[int] = ..., evaluations: _Optional[_Iterable[_Union[Evaluation, _Mapping]]] = ..., stale_gradients: _Optional[int] = ...) -> None: ...
