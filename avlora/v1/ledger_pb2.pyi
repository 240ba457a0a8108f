from avlora.v1 import events_pb2 as _events_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AuthenticateRequest(_message.Message):
    __slots__ = ("api_key",)
    API_KEY_FIELD_NUMBER: _ClassVar[int]
    api_key: str
    def __init__(self, api_key: _Optional[str] = ...) -> None: ...

class AuthenticateResponse(_message.Message):
    __slots__ = ("tenant",)
    TENANT_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    def __init__(self, tenant: _Optional[str] = ...) -> None: ...

class ListJobEventsRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class AppliedEvent(_message.Message):
    __slots__ = ("event", "applied", "note")
    EVENT_FIELD_NUMBER: _ClassVar[int]
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    event: _events_pb2.JobEvent
    applied: bool
    note: str
    def __init__(self, event: _Optional[_Union[_events_pb2.JobEvent, _Mapping]] = ..., applied: _Optional[bool] = ..., note: _Optional[str] = ...) -> None: ...

class ListJobEventsResponse(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[AppliedEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[AppliedEvent, _Mapping]]] = ...) -> None: ...

class CreateApiKeyRequest(_message.Message):
    __slots__ = ("tenant",)
    TENANT_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    def __init__(self, tenant: _Optional[str] = ...) -> None: ...

class CreateApiKeyResponse(_message.Message):
    __slots__ = ("tenant", "api_key")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    API_KEY_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    api_key: str
    def __init__(self, tenant: _Optional[str] = ..., api_key: _Optional[str] = ...) -> None: ...

class RecordUploadRequest(_message.Message):
    __slots__ = ("upload_id", "tenant", "size")
    UPLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    upload_id: str
    tenant: str
    size: int
    def __init__(self, upload_id: _Optional[str] = ..., tenant: _Optional[str] = ..., size: _Optional[int] = ...) -> None: ...

class RecordUploadResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CheckUploadsRequest(_message.Message):
    __slots__ = ("tenant", "upload_ids")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_IDS_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    upload_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, tenant: _Optional[str] = ..., upload_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class CheckUploadsResponse(_message.Message):
    __slots__ = ("not_owned",)
    NOT_OWNED_FIELD_NUMBER: _ClassVar[int]
    not_owned: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, not_owned: _Optional[_Iterable[str]] = ...) -> None: ...
