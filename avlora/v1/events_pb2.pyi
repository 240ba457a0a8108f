from avlora.v1 import jobs_pb2 as _jobs_pb2
from avlora.v1 import params_pb2 as _params_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StageWork(_message.Message):
    __slots__ = ("job_id", "tenant", "params", "input_uri")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    INPUT_URI_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    tenant: str
    params: _params_pb2.JobParams
    input_uri: str
    def __init__(self, job_id: _Optional[str] = ..., tenant: _Optional[str] = ..., params: _Optional[_Union[_params_pb2.JobParams, _Mapping]] = ..., input_uri: _Optional[str] = ...) -> None: ...

class JobEvent(_message.Message):
    __slots__ = ("event_id", "job_id", "at", "started", "progress", "failed", "succeeded", "cancelled", "queued")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    SUCCEEDED_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    job_id: str
    at: float
    started: StageStarted
    progress: _jobs_pb2.Progress
    failed: StageFailed
    succeeded: JobSucceeded
    cancelled: StageCancelled
    queued: StageQueued
    def __init__(self, event_id: _Optional[str] = ..., job_id: _Optional[str] = ..., at: _Optional[float] = ..., started: _Optional[_Union[StageStarted, _Mapping]] = ..., progress: _Optional[_Union[_jobs_pb2.Progress, _Mapping]] = ..., failed: _Optional[_Union[StageFailed, _Mapping]] = ..., succeeded: _Optional[_Union[JobSucceeded, _Mapping]] = ..., cancelled: _Optional[_Union[StageCancelled, _Mapping]] = ..., queued: _Optional[_Union[StageQueued, _Mapping]] = ...) -> None: ...

class StageStarted(_message.Message):
    __slots__ = ("stage", "worker", "attempt")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    WORKER_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    stage: str
    worker: str
    attempt: int
    def __init__(self, stage: _Optional[str] = ..., worker: _Optional[str] = ..., attempt: _Optional[int] = ...) -> None: ...

class StageFailed(_message.Message):
    __slots__ = ("stage", "reason")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    stage: str
    reason: str
    def __init__(self, stage: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class StageCancelled(_message.Message):
    __slots__ = ("stage",)
    STAGE_FIELD_NUMBER: _ClassVar[int]
    stage: str
    def __init__(self, stage: _Optional[str] = ...) -> None: ...

class StageQueued(_message.Message):
    __slots__ = ("stage",)
    STAGE_FIELD_NUMBER: _ClassVar[int]
    stage: str
    def __init__(self, stage: _Optional[str] = ...) -> None: ...

class JobSucceeded(_message.Message):
    __slots__ = ("outputs", "steps_completed")
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    STEPS_COMPLETED_FIELD_NUMBER: _ClassVar[int]
    outputs: _jobs_pb2.Outputs
    steps_completed: int
    def __init__(self, outputs: _Optional[_Union[_jobs_pb2.Outputs, _Mapping]] = ..., steps_completed: _Optional[int] = ...) -> None: ...
