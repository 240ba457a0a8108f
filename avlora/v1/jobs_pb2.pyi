import datetime

from avlora.v1 import figures_pb2 as _figures_pb2
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
    __slots__ = ("params", "request_id", "webhook_url")
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    WEBHOOK_URL_FIELD_NUMBER: _ClassVar[int]
    params: _params_pb2.JobParams
    request_id: str
    webhook_url: str
    def __init__(self, params: _Optional[_Union[_params_pb2.JobParams, _Mapping]] = ..., request_id: _Optional[str] = ..., webhook_url: _Optional[str] = ...) -> None: ...

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
    __slots__ = ("stage", "done", "total", "unit", "loss", "audio_loss", "video_loss", "validation_loss", "baseline_validation_loss", "rate", "eta_seconds", "message", "validation_loss_on", "tokens_per_second", "gpu_memory_peak_bytes")
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
    TOKENS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    GPU_MEMORY_PEAK_BYTES_FIELD_NUMBER: _ClassVar[int]
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
    tokens_per_second: float
    gpu_memory_peak_bytes: int
    def __init__(self, stage: _Optional[str] = ..., done: _Optional[int] = ..., total: _Optional[int] = ..., unit: _Optional[str] = ..., loss: _Optional[float] = ..., audio_loss: _Optional[float] = ..., video_loss: _Optional[float] = ..., validation_loss: _Optional[float] = ..., baseline_validation_loss: _Optional[float] = ..., rate: _Optional[float] = ..., eta_seconds: _Optional[float] = ..., message: _Optional[str] = ..., validation_loss_on: _Optional[str] = ..., tokens_per_second: _Optional[float] = ..., gpu_memory_peak_bytes: _Optional[int] = ...) -> None: ...

class Outputs(_message.Message):
    __slots__ = ("lora_file", "lora_comfyui_file", "config_file", "audio", "video", "debug_dataset", "audio_base", "video_base", "preview_video", "preview_video_base", "metrics_file", "spectrograms", "audio_figures")
    LORA_FILE_FIELD_NUMBER: _ClassVar[int]
    LORA_COMFYUI_FILE_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FILE_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    VIDEO_FIELD_NUMBER: _ClassVar[int]
    DEBUG_DATASET_FIELD_NUMBER: _ClassVar[int]
    AUDIO_BASE_FIELD_NUMBER: _ClassVar[int]
    VIDEO_BASE_FIELD_NUMBER: _ClassVar[int]
    PREVIEW_VIDEO_FIELD_NUMBER: _ClassVar[int]
    PREVIEW_VIDEO_BASE_FIELD_NUMBER: _ClassVar[int]
    METRICS_FILE_FIELD_NUMBER: _ClassVar[int]
    SPECTROGRAMS_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIGURES_FIELD_NUMBER: _ClassVar[int]
    lora_file: str
    lora_comfyui_file: str
    config_file: str
    audio: str
    video: str
    debug_dataset: str
    audio_base: str
    video_base: str
    preview_video: str
    preview_video_base: str
    metrics_file: str
    spectrograms: str
    audio_figures: _containers.RepeatedCompositeFieldContainer[_figures_pb2.AudioFigures]
    def __init__(self, lora_file: _Optional[str] = ..., lora_comfyui_file: _Optional[str] = ..., config_file: _Optional[str] = ..., audio: _Optional[str] = ..., video: _Optional[str] = ..., debug_dataset: _Optional[str] = ..., audio_base: _Optional[str] = ..., video_base: _Optional[str] = ..., preview_video: _Optional[str] = ..., preview_video_base: _Optional[str] = ..., metrics_file: _Optional[str] = ..., spectrograms: _Optional[str] = ..., audio_figures: _Optional[_Iterable[_Union[_figures_pb2.AudioFigures, _Mapping]]] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("id", "mode", "state", "params", "request_id", "created_at", "updated_at", "progress", "error", "outputs", "billed_units", "unit_price", "cost", "queued_for", "queue_position", "download_urls", "download_urls_expire_at", "webhook_url")
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
    WEBHOOK_URL_FIELD_NUMBER: _ClassVar[int]
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
    webhook_url: str
    def __init__(self, id: _Optional[str] = ..., mode: _Optional[str] = ..., state: _Optional[_Union[JobState, str]] = ..., params: _Optional[_Union[_params_pb2.JobParams, _Mapping]] = ..., request_id: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., progress: _Optional[_Union[Progress, _Mapping]] = ..., error: _Optional[str] = ..., outputs: _Optional[_Union[Outputs, _Mapping]] = ..., billed_units: _Optional[int] = ..., unit_price: _Optional[float] = ..., cost: _Optional[float] = ..., queued_for: _Optional[str] = ..., queue_position: _Optional[int] = ..., download_urls: _Optional[_Mapping[str, str]] = ..., download_urls_expire_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., webhook_url: _Optional[str] = ...) -> None: ...

class WebhookSecretRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WebhookSecret(_message.Message):
    __slots__ = ("secret",)
    SECRET_FIELD_NUMBER: _ClassVar[int]
    secret: str
    def __init__(self, secret: _Optional[str] = ...) -> None: ...

class WebhookAttempt(_message.Message):
    __slots__ = ("at", "status_code", "error")
    AT_FIELD_NUMBER: _ClassVar[int]
    STATUS_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    at: _timestamp_pb2.Timestamp
    status_code: int
    error: str
    def __init__(self, at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., status_code: _Optional[int] = ..., error: _Optional[str] = ...) -> None: ...

class WebhookDelivery(_message.Message):
    __slots__ = ("message_id", "type", "state", "url", "status", "created_at", "next_attempt_at", "attempts")
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    NEXT_ATTEMPT_AT_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    message_id: str
    type: str
    state: JobState
    url: str
    status: str
    created_at: _timestamp_pb2.Timestamp
    next_attempt_at: _timestamp_pb2.Timestamp
    attempts: _containers.RepeatedCompositeFieldContainer[WebhookAttempt]
    def __init__(self, message_id: _Optional[str] = ..., type: _Optional[str] = ..., state: _Optional[_Union[JobState, str]] = ..., url: _Optional[str] = ..., status: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., next_attempt_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., attempts: _Optional[_Iterable[_Union[WebhookAttempt, _Mapping]]] = ...) -> None: ...

class WebhookDeliveries(_message.Message):
    __slots__ = ("deliveries",)
    DELIVERIES_FIELD_NUMBER: _ClassVar[int]
    deliveries: _containers.RepeatedCompositeFieldContainer[WebhookDelivery]
    def __init__(self, deliveries: _Optional[_Iterable[_Union[WebhookDelivery, _Mapping]]] = ...) -> None: ...

class DownloadArtifactRequest(_message.Message):
    __slots__ = ("job_id", "name", "offset", "length")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    name: str
    offset: int
    length: int
    def __init__(self, job_id: _Optional[str] = ..., name: _Optional[str] = ..., offset: _Optional[int] = ..., length: _Optional[int] = ...) -> None: ...

class ArtifactChunk(_message.Message):
    __slots__ = ("name", "size", "data")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    name: str
    size: int
    data: bytes
    def __init__(self, name: _Optional[str] = ..., size: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class ProgressPoint(_message.Message):
    __slots__ = ("at", "stage", "done", "total", "unit", "loss", "validation_loss", "baseline_validation_loss", "audio_loss", "video_loss")
    AT_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_LOSS_FIELD_NUMBER: _ClassVar[int]
    BASELINE_VALIDATION_LOSS_FIELD_NUMBER: _ClassVar[int]
    AUDIO_LOSS_FIELD_NUMBER: _ClassVar[int]
    VIDEO_LOSS_FIELD_NUMBER: _ClassVar[int]
    at: float
    stage: str
    done: int
    total: int
    unit: str
    loss: float
    validation_loss: float
    baseline_validation_loss: float
    audio_loss: float
    video_loss: float
    def __init__(self, at: _Optional[float] = ..., stage: _Optional[str] = ..., done: _Optional[int] = ..., total: _Optional[int] = ..., unit: _Optional[str] = ..., loss: _Optional[float] = ..., validation_loss: _Optional[float] = ..., baseline_validation_loss: _Optional[float] = ..., audio_loss: _Optional[float] = ..., video_loss: _Optional[float] = ...) -> None: ...

class StateChange(_message.Message):
    __slots__ = ("at", "state", "note")
    AT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    at: float
    state: JobState
    note: str
    def __init__(self, at: _Optional[float] = ..., state: _Optional[_Union[JobState, str]] = ..., note: _Optional[str] = ...) -> None: ...

class LogLine(_message.Message):
    __slots__ = ("at", "stage", "message")
    AT_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    at: float
    stage: str
    message: str
    def __init__(self, at: _Optional[float] = ..., stage: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class JobHistory(_message.Message):
    __slots__ = ("job_id", "points", "states", "logs", "webhooks")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    LOGS_FIELD_NUMBER: _ClassVar[int]
    WEBHOOKS_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    points: _containers.RepeatedCompositeFieldContainer[ProgressPoint]
    states: _containers.RepeatedCompositeFieldContainer[StateChange]
    logs: _containers.RepeatedCompositeFieldContainer[LogLine]
    webhooks: _containers.RepeatedCompositeFieldContainer[WebhookDelivery]
    def __init__(self, job_id: _Optional[str] = ..., points: _Optional[_Iterable[_Union[ProgressPoint, _Mapping]]] = ..., states: _Optional[_Iterable[_Union[StateChange, _Mapping]]] = ..., logs: _Optional[_Iterable[_Union[LogLine, _Mapping]]] = ..., webhooks: _Optional[_Iterable[_Union[WebhookDelivery, _Mapping]]] = ...) -> None: ...

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
