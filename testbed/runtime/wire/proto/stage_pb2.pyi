from testbed.runtime.wire.proto import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TrainingMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRAINING_MODE_UNSPECIFIED: _ClassVar[TrainingMode]
    TRAINING_MODE_BP: _ClassVar[TrainingMode]
    TRAINING_MODE_SG: _ClassVar[TrainingMode]
TRAINING_MODE_UNSPECIFIED: TrainingMode
TRAINING_MODE_BP: TrainingMode
TRAINING_MODE_SG: TrainingMode

class ActivationBatch(_message.Message):
    __slots__ = ("batch_id", "step", "activations", "labels", "final", "target", "stage_id", "drain")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    ACTIVATIONS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    STAGE_ID_FIELD_NUMBER: _ClassVar[int]
    DRAIN_FIELD_NUMBER: _ClassVar[int]
    batch_id: int
    step: int
    activations: _common_pb2.Tensor
    labels: _common_pb2.Tensor
    final: bool
    target: _common_pb2.Tensor
    stage_id: int
    drain: bool
    def __init__(self, batch_id: _Optional[int] = ..., step: _Optional[int] = ..., activations: _Optional[_Union[_common_pb2.Tensor, _Mapping]] = ..., labels: _Optional[_Union[_common_pb2.Tensor, _Mapping]] = ..., final: _Optional[bool] = ..., target: _Optional[_Union[_common_pb2.Tensor, _Mapping]] = ..., stage_id: _Optional[int] = ..., drain: _Optional[bool] = ...) -> None: ...

class GradientBatch(_message.Message):
    __slots__ = ("batch_id", "step", "gradient")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    GRADIENT_FIELD_NUMBER: _ClassVar[int]
    batch_id: int
    step: int
    gradient: _common_pb2.Tensor
    def __init__(self, batch_id: _Optional[int] = ..., step: _Optional[int] = ..., gradient: _Optional[_Union[_common_pb2.Tensor, _Mapping]] = ...) -> None: ...

class HealthReply(_message.Message):
    __slots__ = ("role", "stage_ids", "step", "done")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    STAGE_IDS_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    role: str
    stage_ids: _containers.RepeatedScalarFieldContainer[int]
    step: int
    done: bool
    def __init__(self, role: _Optional[str] = ..., stage_ids: _Optional[_Iterable[int]] = ..., step: _Optional[int] = ..., done: _Optional[bool] = ...) -> None: ...

class StartCommand(_message.Message):
    __slots__ = ("run_id", "mode", "max_steps", "batch_size", "learning_rate", "seed", "peers")
    class PeersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    MAX_STEPS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    PEERS_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    mode: TrainingMode
    max_steps: int
    batch_size: int
    learning_rate: float
    seed: int
    peers: _containers.ScalarMap[str, str]
    def __init__(self, run_id: _Optional[str] = ..., mode: _Optional[_Union[TrainingMode, str]] = ..., max_steps: _Optional[int] = ..., batch_size: _Optional[int] = ..., learning_rate: _Optional[float] = ..., seed: _Optional[int] = ..., peers: _Optional[_Mapping[str, str]] = ...) -> None: ...

class StopCommand(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class ControlRequest(_message.Message):
    __slots__ = ("start", "stop", "resplit")
    START_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    RESPLIT_FIELD_NUMBER: _ClassVar[int]
    start: StartCommand
    stop: StopCommand
    resplit: _common_pb2.SplitPlan
    def __init__(self, start: _Optional[_Union[StartCommand, _Mapping]] = ..., stop: _Optional[_Union[StopCommand, _Mapping]] = ..., resplit: _Optional[_Union[_common_pb2.SplitPlan, _Mapping]] = ...) -> None: ...

class StatsReply(_message.Message):
    __slots__ = ("step", "forward_received", "forward_sent", "backward_received", "backward_sent", "invalid_received", "wire_bytes_received", "wire_bytes_sent", "raw_bytes_received", "raw_bytes_sent")
    STEP_FIELD_NUMBER: _ClassVar[int]
    FORWARD_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    FORWARD_SENT_FIELD_NUMBER: _ClassVar[int]
    BACKWARD_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    BACKWARD_SENT_FIELD_NUMBER: _ClassVar[int]
    INVALID_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    WIRE_BYTES_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    WIRE_BYTES_SENT_FIELD_NUMBER: _ClassVar[int]
    RAW_BYTES_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    RAW_BYTES_SENT_FIELD_NUMBER: _ClassVar[int]
    step: int
    forward_received: int
    forward_sent: int
    backward_received: int
    backward_sent: int
    invalid_received: int
    wire_bytes_received: int
    wire_bytes_sent: int
    raw_bytes_received: int
    raw_bytes_sent: int
    def __init__(self, step: _Optional[int] = ..., forward_received: _Optional[int] = ..., forward_sent: _Optional[int] = ..., backward_received: _Optional[int] = ..., backward_sent: _Optional[int] = ..., invalid_received: _Optional[int] = ..., wire_bytes_received: _Optional[int] = ..., wire_bytes_sent: _Optional[int] = ..., raw_bytes_received: _Optional[int] = ..., raw_bytes_sent: _Optional[int] = ...) -> None: ...
