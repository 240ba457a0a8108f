import datetime

from avlora.v1 import params_pb2 as _params_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNSPECIFIED: _ClassVar[JobState]
    QUEUED: _ClassVar[JobState]
    INGESTING: _ClassVar[JobState]
    PREPROCESSING: _ClassVar[JobState]
    TRAINING: _ClassVar[JobState]
    SUCCEEDED: _ClassVar[JobState]
    FAILED: _ClassVar[JobState]
    CANCELLED: _ClassVar[JobState]
JOB_STATE_UNSPECIFIED: JobState
QUEUED: JobState
INGESTING: JobState
PREPROCESSING: JobState
TRAINING: JobState
SUCCEEDED: JobState
FAILED: JobState
CANCELLED: JobState

class CreateJobRequest(_message.Message):
    __slots__ = ("params", "request_id")
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    params: _params_pb2.JobParams
    request_id: str
    def __init__(self, params: _Optional[_Union[_params_pb2.JobParams, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class CancelJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "state", "mode")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    state: JobState
    mode: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., state: _Optional[_Union[JobState, str]] = ..., mode: _Optional[str] = ...) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ("jobs", "next_page_token")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    next_page_token: str
    def __init__(self, jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class Progress(_message.Message):
    __slots__ = ("stage", "done", "total", "unit", "loss", "audio_loss", "video_loss", "validation_loss", "baseline_validation_loss", "rate", "eta_seconds", "message", "validation_loss_on")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    AUDIO_LOSS_FIELD_NUMBER: _ClassVar[int]
    VIDEO_LOSS_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_LOSS_FIELD_NUMBER: _ClassVar[int]
    BASELINE_VALIDATION_LOSS_FIELD_NUMBER: _ClassVar[int]
    RATE_FIELD_NUMBER: _ClassVar[int]
    ETA_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_LOSS_ON_FIELD_NUMBER: _ClassVar[int]
    stage: str
    done: int
    total: int
    unit: str
    loss: float
    audio_loss: float
    video_loss: float
    validation_loss: float
    baseline_validation_loss: float
    rate: float
    eta_seconds: float
    message: str
    validation_loss_on: str
    def __init__(self, stage: _Optional[str] = ..., done: _Optional[int] = ..., total: _Optional[int] = ..., unit: _Optional[str] = ..., loss: _Optional[float] = ..., audio_loss: _Optional[float] = ..., video_loss: _Optional[float] = ..., validation_loss: _Optional[float] = ..., baseline_validation_loss: _Optional[float] = ..., rate: _Optional[float] = ..., eta_seconds: _Optional[float] = ..., message: _Optional[str] = ..., validation_loss_on: _Optional[str] = ...) -> None: ...

class Outputs(_message.Message):
    __slots__ = ("lora_file", "lora_comfyui_file", "config_file", "audio", "video", "debug_dataset")
    LORA_FILE_FIELD_NUMBER: _ClassVar[int]
    LORA_COMFYUI_FILE_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FILE_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    VIDEO_FIELD_NUMBER: _ClassVar[int]
    DEBUG_DATASET_FIELD_NUMBER: _ClassVar[int]
    lora_file: str
    lora_comfyui_file: str
    config_file: str
    audio: str
    video: str
    debug_dataset: str
    def __init__(self, lora_file: _Optional[str] = ..., lora_comfyui_file: _Optional[str] = ..., config_file: _Optional[str] = ..., audio: _Optional[str] = ..., video: _Optional[str] = ..., debug_dataset: _Optional[str] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("id", "mode", "state", "params", "request_id", "created_at", "updated_at", "progress", "error", "outputs", "billed_units", "unit_price", "cost", "queued_for", "queue_position", "download_urls", "download_urls_expire_at")
    class DownloadUrlsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    BILLED_UNITS_FIELD_NUMBER: _ClassVar[int]
    UNIT_PRICE_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FOR_FIELD_NUMBER: _ClassVar[int]
    QUEUE_POSITION_FIELD_NUMBER: _ClassVar[int]
    DOWNLOAD_URLS_FIELD_NUMBER: _ClassVar[int]
    DOWNLOAD_URLS_EXPIRE_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    mode: str
    state: JobState
    params: _params_pb2.JobParams
    request_id: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    progress: Progress
    error: str
    outputs: Outputs
    billed_units: int
    unit_price: float
    cost: float
    queued_for: str
    queue_position: int
    download_urls: _containers.ScalarMap[str, str]
    download_urls_expire_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., mode: _Optional[str] = ..., state: _Optional[_Union[JobState, str]] = ..., params: _Optional[_Union[_params_pb2.JobParams, _Mapping]] = ..., request_id: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., progress: _Optional[_Union[Progress, _Mapping]] = ..., error: _Optional[str] = ..., outputs: _Optional[_Union[Outputs, _Mapping]] = ..., billed_units: _Optional[int] = ..., unit_price: _Optional[float] = ..., cost: _Optional[float] = ..., queued_for: _Optional[str] = ..., queue_position: _Optional[int] = ..., download_urls: _Optional[_Mapping[str, str]] = ..., download_urls_expire_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class DownloadArtifactRequest(_message.Message):
    __slots__ = ("job_id", "name")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    name: str
    def __init__(self, job_id: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class ArtifactChunk(_message.Message):
    __slots__ = ("name", "size", "data")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    name: str
    size: int
    data: bytes
    def __init__(self, name: _Optional[str] = ..., size: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class GetUsageRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class UsageLine(_message.Message):
    __slots__ = ("job_id", "mode", "state", "units", "unit_price", "cost")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    UNITS_FIELD_NUMBER: _ClassVar[int]
    UNIT_PRICE_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    mode: str
    state: JobState
    units: int
    unit_price: float
    cost: float
    def __init__(self, job_id: _Optional[str] = ..., mode: _Optional[str] = ..., state: _Optional[_Union[JobState, str]] = ..., units: _Optional[int] = ..., unit_price: _Optional[float] = ..., cost: _Optional[float] = ...) -> None: ...

class Usage(_message.Message):
    __slots__ = ("tenant", "lines", "total_units", "total_cost")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_UNITS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_COST_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    lines: _containers.RepeatedCompositeFieldContainer[UsageLine]
    total_units: int
    total_cost: float
    def __init__(self, tenant: _Optional[str] = ..., lines: _Optional[_Iterable[_Union[UsageLine, _Mapping]]] = ..., total_units: _Optional[int] = ..., total_cost: _Optional[float] = ...) -> None: ...
