from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class AudioFigures(_message.Message):
    __slots__ = ("name", "source", "loudness_lufs", "peak_dbfs", "clipped_share", "silence_share", "sync_offset_ms", "sync_confidence")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    LOUDNESS_LUFS_FIELD_NUMBER: _ClassVar[int]
    PEAK_DBFS_FIELD_NUMBER: _ClassVar[int]
    CLIPPED_SHARE_FIELD_NUMBER: _ClassVar[int]
    SILENCE_SHARE_FIELD_NUMBER: _ClassVar[int]
    SYNC_OFFSET_MS_FIELD_NUMBER: _ClassVar[int]
    SYNC_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    name: str
    source: str
    loudness_lufs: float
    peak_dbfs: float
    clipped_share: float
    silence_share: float
    sync_offset_ms: float
    sync_confidence: float
    def __init__(self, name: _Optional[str] = ..., source: _Optional[str] = ..., loudness_lufs: _Optional[float] = ..., peak_dbfs: _Optional[float] = ..., clipped_share: _Optional[float] = ..., silence_share: _Optional[float] = ..., sync_offset_ms: _Optional[float] = ..., sync_confidence: _Optional[float] = ...) -> None: ...
