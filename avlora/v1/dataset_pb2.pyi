from avlora.v1 import figures_pb2 as _figures_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FileKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FILE_KIND_UNSPECIFIED: _ClassVar[FileKind]
    VIDEO: _ClassVar[FileKind]
    CAPTION: _ClassVar[FileKind]
    IMAGE: _ClassVar[FileKind]
FILE_KIND_UNSPECIFIED: FileKind
VIDEO: FileKind
CAPTION: FileKind
IMAGE: FileKind

class ManifestFile(_message.Message):
    __slots__ = ("name", "uri", "size", "kind")
    NAME_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    name: str
    uri: str
    size: int
    kind: FileKind
    def __init__(self, name: _Optional[str] = ..., uri: _Optional[str] = ..., size: _Optional[int] = ..., kind: _Optional[_Union[FileKind, str]] = ...) -> None: ...

class IgnoredFile(_message.Message):
    __slots__ = ("name", "reason")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    reason: str
    def __init__(self, name: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ValidationMedia(_message.Message):
    __slots__ = ("index", "prompt", "video_uri", "audio_uri")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    VIDEO_URI_FIELD_NUMBER: _ClassVar[int]
    AUDIO_URI_FIELD_NUMBER: _ClassVar[int]
    index: int
    prompt: str
    video_uri: str
    audio_uri: str
    def __init__(self, index: _Optional[int] = ..., prompt: _Optional[str] = ..., video_uri: _Optional[str] = ..., audio_uri: _Optional[str] = ...) -> None: ...

class Manifest(_message.Message):
    __slots__ = ("job_id", "archive_uri", "files", "ignored", "validation")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ARCHIVE_URI_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    IGNORED_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    archive_uri: str
    files: _containers.RepeatedCompositeFieldContainer[ManifestFile]
    ignored: _containers.RepeatedCompositeFieldContainer[IgnoredFile]
    validation: _containers.RepeatedCompositeFieldContainer[ValidationMedia]
    def __init__(self, job_id: _Optional[str] = ..., archive_uri: _Optional[str] = ..., files: _Optional[_Iterable[_Union[ManifestFile, _Mapping]]] = ..., ignored: _Optional[_Iterable[_Union[IgnoredFile, _Mapping]]] = ..., validation: _Optional[_Iterable[_Union[ValidationMedia, _Mapping]]] = ...) -> None: ...

class ClipReport(_message.Message):
    __slots__ = ("name", "accepted", "reason", "caption", "duration_seconds", "native_fps", "native_frames", "width", "height", "audio_channels", "audio_sample_rate", "warnings", "figures")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CAPTION_FIELD_NUMBER: _ClassVar[int]
    DURATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    NATIVE_FPS_FIELD_NUMBER: _ClassVar[int]
    NATIVE_FRAMES_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    AUDIO_CHANNELS_FIELD_NUMBER: _ClassVar[int]
    AUDIO_SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    FIGURES_FIELD_NUMBER: _ClassVar[int]
    name: str
    accepted: bool
    reason: str
    caption: str
    duration_seconds: float
    native_fps: float
    native_frames: int
    width: int
    height: int
    audio_channels: int
    audio_sample_rate: int
    warnings: _containers.RepeatedScalarFieldContainer[str]
    figures: _figures_pb2.AudioFigures
    def __init__(self, name: _Optional[str] = ..., accepted: _Optional[bool] = ..., reason: _Optional[str] = ..., caption: _Optional[str] = ..., duration_seconds: _Optional[float] = ..., native_fps: _Optional[float] = ..., native_frames: _Optional[int] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., audio_channels: _Optional[int] = ..., audio_sample_rate: _Optional[int] = ..., warnings: _Optional[_Iterable[str]] = ..., figures: _Optional[_Union[_figures_pb2.AudioFigures, _Mapping]] = ...) -> None: ...

class DatasetReport(_message.Message):
    __slots__ = ("ok", "errors", "clips", "ignored")
    OK_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    CLIPS_FIELD_NUMBER: _ClassVar[int]
    IGNORED_FIELD_NUMBER: _ClassVar[int]
    ok: bool
    errors: _containers.RepeatedScalarFieldContainer[str]
    clips: _containers.RepeatedCompositeFieldContainer[ClipReport]
    ignored: _containers.RepeatedCompositeFieldContainer[IgnoredFile]
    def __init__(self, ok: _Optional[bool] = ..., errors: _Optional[_Iterable[str]] = ..., clips: _Optional[_Iterable[_Union[ClipReport, _Mapping]]] = ..., ignored: _Optional[_Iterable[_Union[IgnoredFile, _Mapping]]] = ...) -> None: ...

class TrainingSample(_message.Message):
    __slots__ = ("name", "uri", "caption")
    NAME_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    CAPTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    uri: str
    caption: str
    def __init__(self, name: _Optional[str] = ..., uri: _Optional[str] = ..., caption: _Optional[str] = ...) -> None: ...

class ValidationSample(_message.Message):
    __slots__ = ("index", "prompt", "uri")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    index: int
    prompt: str
    uri: str
    def __init__(self, index: _Optional[int] = ..., prompt: _Optional[str] = ..., uri: _Optional[str] = ...) -> None: ...

class TrainingSet(_message.Message):
    __slots__ = ("job_id", "mode", "samples", "validation", "negative_prompt_uri", "debug_dataset_uri", "report", "width", "height", "frame_rate")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_FIELD_NUMBER: _ClassVar[int]
    NEGATIVE_PROMPT_URI_FIELD_NUMBER: _ClassVar[int]
    DEBUG_DATASET_URI_FIELD_NUMBER: _ClassVar[int]
    REPORT_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    FRAME_RATE_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    mode: str
    samples: _containers.RepeatedCompositeFieldContainer[TrainingSample]
    validation: _containers.RepeatedCompositeFieldContainer[ValidationSample]
    negative_prompt_uri: str
    debug_dataset_uri: str
    report: DatasetReport
    width: int
    height: int
    frame_rate: int
    def __init__(self, job_id: _Optional[str] = ..., mode: _Optional[str] = ..., samples: _Optional[_Iterable[_Union[TrainingSample, _Mapping]]] = ..., validation: _Optional[_Iterable[_Union[ValidationSample, _Mapping]]] = ..., negative_prompt_uri: _Optional[str] = ..., debug_dataset_uri: _Optional[str] = ..., report: _Optional[_Union[DatasetReport, _Mapping]] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., frame_rate: _Optional[int] = ...) -> None: ...
