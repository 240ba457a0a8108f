from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class V2AValidation(_message.Message):
    __slots__ = ("prompt", "video_url")
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    VIDEO_URL_FIELD_NUMBER: _ClassVar[int]
    prompt: str
    video_url: str
    def __init__(self, prompt: _Optional[str] = ..., video_url: _Optional[str] = ...) -> None: ...

class V2AParams(_message.Message):
    __slots__ = ("training_data_url", "trigger_phrase", "rank", "number_of_steps", "learning_rate", "number_of_frames", "frame_rate", "resolution", "aspect_ratio", "auto_scale_input", "split_input_into_scenes", "split_input_duration_threshold", "validation", "validation_negative_prompt", "validation_number_of_frames", "validation_frame_rate", "validation_resolution", "validation_aspect_ratio", "stg_scale", "debug_dataset")
    TRAINING_DATA_URL_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_PHRASE_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    NUMBER_OF_STEPS_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    NUMBER_OF_FRAMES_FIELD_NUMBER: _ClassVar[int]
    FRAME_RATE_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    ASPECT_RATIO_FIELD_NUMBER: _ClassVar[int]
    AUTO_SCALE_INPUT_FIELD_NUMBER: _ClassVar[int]
    SPLIT_INPUT_INTO_SCENES_FIELD_NUMBER: _ClassVar[int]
    SPLIT_INPUT_DURATION_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_NEGATIVE_PROMPT_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_NUMBER_OF_FRAMES_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_FRAME_RATE_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_ASPECT_RATIO_FIELD_NUMBER: _ClassVar[int]
    STG_SCALE_FIELD_NUMBER: _ClassVar[int]
    DEBUG_DATASET_FIELD_NUMBER: _ClassVar[int]
    training_data_url: str
    trigger_phrase: str
    rank: int
    number_of_steps: int
    learning_rate: float
    number_of_frames: int
    frame_rate: int
    resolution: str
    aspect_ratio: str
    auto_scale_input: bool
    split_input_into_scenes: bool
    split_input_duration_threshold: float
    validation: _containers.RepeatedCompositeFieldContainer[V2AValidation]
    validation_negative_prompt: str
    validation_number_of_frames: int
    validation_frame_rate: int
    validation_resolution: str
    validation_aspect_ratio: str
    stg_scale: float
    debug_dataset: bool
    def __init__(self, training_data_url: _Optional[str] = ..., trigger_phrase: _Optional[str] = ..., rank: _Optional[int] = ..., number_of_steps: _Optional[int] = ..., learning_rate: _Optional[float] = ..., number_of_frames: _Optional[int] = ..., frame_rate: _Optional[int] = ..., resolution: _Optional[str] = ..., aspect_ratio: _Optional[str] = ..., auto_scale_input: _Optional[bool] = ..., split_input_into_scenes: _Optional[bool] = ..., split_input_duration_threshold: _Optional[float] = ..., validation: _Optional[_Iterable[_Union[V2AValidation, _Mapping]]] = ..., validation_negative_prompt: _Optional[str] = ..., validation_number_of_frames: _Optional[int] = ..., validation_frame_rate: _Optional[int] = ..., validation_resolution: _Optional[str] = ..., validation_aspect_ratio: _Optional[str] = ..., stg_scale: _Optional[float] = ..., debug_dataset: _Optional[bool] = ...) -> None: ...

class AV2AVValidation(_message.Message):
    __slots__ = ("prompt", "reference_video_url", "reference_audio_url")
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_VIDEO_URL_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_AUDIO_URL_FIELD_NUMBER: _ClassVar[int]
    prompt: str
    reference_video_url: str
    reference_audio_url: str
    def __init__(self, prompt: _Optional[str] = ..., reference_video_url: _Optional[str] = ..., reference_audio_url: _Optional[str] = ...) -> None: ...

class AV2AVParams(_message.Message):
    __slots__ = ("training_data_url", "trigger_phrase", "rank", "number_of_steps", "learning_rate", "reference_downscale_factor", "reference_temporal_scale_factor", "number_of_frames", "frame_rate", "resolution", "aspect_ratio", "auto_scale_input", "split_input_into_scenes", "split_input_duration_threshold", "audio_normalize", "audio_preserve_pitch", "validation", "validation_negative_prompt", "validation_number_of_frames", "validation_frame_rate", "validation_resolution", "validation_aspect_ratio", "stg_scale", "debug_dataset")
    TRAINING_DATA_URL_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_PHRASE_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    NUMBER_OF_STEPS_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_DOWNSCALE_FACTOR_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_TEMPORAL_SCALE_FACTOR_FIELD_NUMBER: _ClassVar[int]
    NUMBER_OF_FRAMES_FIELD_NUMBER: _ClassVar[int]
    FRAME_RATE_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    ASPECT_RATIO_FIELD_NUMBER: _ClassVar[int]
    AUTO_SCALE_INPUT_FIELD_NUMBER: _ClassVar[int]
    SPLIT_INPUT_INTO_SCENES_FIELD_NUMBER: _ClassVar[int]
    SPLIT_INPUT_DURATION_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    AUDIO_NORMALIZE_FIELD_NUMBER: _ClassVar[int]
    AUDIO_PRESERVE_PITCH_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_NEGATIVE_PROMPT_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_NUMBER_OF_FRAMES_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_FRAME_RATE_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_ASPECT_RATIO_FIELD_NUMBER: _ClassVar[int]
    STG_SCALE_FIELD_NUMBER: _ClassVar[int]
    DEBUG_DATASET_FIELD_NUMBER: _ClassVar[int]
    training_data_url: str
    trigger_phrase: str
    rank: int
    number_of_steps: int
    learning_rate: float
    reference_downscale_factor: int
    reference_temporal_scale_factor: int
    number_of_frames: int
    frame_rate: int
    resolution: str
    aspect_ratio: str
    auto_scale_input: bool
    split_input_into_scenes: bool
    split_input_duration_threshold: float
    audio_normalize: bool
    audio_preserve_pitch: bool
    validation: _containers.RepeatedCompositeFieldContainer[AV2AVValidation]
    validation_negative_prompt: str
    validation_number_of_frames: int
    validation_frame_rate: int
    validation_resolution: str
    validation_aspect_ratio: str
    stg_scale: float
    debug_dataset: bool
    def __init__(self, training_data_url: _Optional[str] = ..., trigger_phrase: _Optional[str] = ..., rank: _Optional[int] = ..., number_of_steps: _Optional[int] = ..., learning_rate: _Optional[float] = ..., reference_downscale_factor: _Optional[int] = ..., reference_temporal_scale_factor: _Optional[int] = ..., number_of_frames: _Optional[int] = ..., frame_rate: _Optional[int] = ..., resolution: _Optional[str] = ..., aspect_ratio: _Optional[str] = ..., auto_scale_input: _Optional[bool] = ..., split_input_into_scenes: _Optional[bool] = ..., split_input_duration_threshold: _Optional[float] = ..., audio_normalize: _Optional[bool] = ..., audio_preserve_pitch: _Optional[bool] = ..., validation: _Optional[_Iterable[_Union[AV2AVValidation, _Mapping]]] = ..., validation_negative_prompt: _Optional[str] = ..., validation_number_of_frames: _Optional[int] = ..., validation_frame_rate: _Optional[int] = ..., validation_resolution: _Optional[str] = ..., validation_aspect_ratio: _Optional[str] = ..., stg_scale: _Optional[float] = ..., debug_dataset: _Optional[bool] = ...) -> None: ...

class A2VValidation(_message.Message):
    __slots__ = ("prompt", "audio_url")
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    AUDIO_URL_FIELD_NUMBER: _ClassVar[int]
    prompt: str
    audio_url: str
    def __init__(self, prompt: _Optional[str] = ..., audio_url: _Optional[str] = ...) -> None: ...

class A2VParams(_message.Message):
    __slots__ = ("training_data_url", "trigger_phrase", "rank", "number_of_steps", "learning_rate", "number_of_frames", "frame_rate", "resolution", "aspect_ratio", "auto_scale_input", "split_input_into_scenes", "split_input_duration_threshold", "validation", "validation_negative_prompt", "validation_number_of_frames", "validation_frame_rate", "validation_resolution", "validation_aspect_ratio", "stg_scale", "debug_dataset")
    TRAINING_DATA_URL_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_PHRASE_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    NUMBER_OF_STEPS_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    NUMBER_OF_FRAMES_FIELD_NUMBER: _ClassVar[int]
    FRAME_RATE_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    ASPECT_RATIO_FIELD_NUMBER: _ClassVar[int]
    AUTO_SCALE_INPUT_FIELD_NUMBER: _ClassVar[int]
    SPLIT_INPUT_INTO_SCENES_FIELD_NUMBER: _ClassVar[int]
    SPLIT_INPUT_DURATION_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_NEGATIVE_PROMPT_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_NUMBER_OF_FRAMES_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_FRAME_RATE_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_ASPECT_RATIO_FIELD_NUMBER: _ClassVar[int]
    STG_SCALE_FIELD_NUMBER: _ClassVar[int]
    DEBUG_DATASET_FIELD_NUMBER: _ClassVar[int]
    training_data_url: str
    trigger_phrase: str
    rank: int
    number_of_steps: int
    learning_rate: float
    number_of_frames: int
    frame_rate: int
    resolution: str
    aspect_ratio: str
    auto_scale_input: bool
    split_input_into_scenes: bool
    split_input_duration_threshold: float
    validation: _containers.RepeatedCompositeFieldContainer[A2VValidation]
    validation_negative_prompt: str
    validation_number_of_frames: int
    validation_frame_rate: int
    validation_resolution: str
    validation_aspect_ratio: str
    stg_scale: float
    debug_dataset: bool
    def __init__(self, training_data_url: _Optional[str] = ..., trigger_phrase: _Optional[str] = ..., rank: _Optional[int] = ..., number_of_steps: _Optional[int] = ..., learning_rate: _Optional[float] = ..., number_of_frames: _Optional[int] = ..., frame_rate: _Optional[int] = ..., resolution: _Optional[str] = ..., aspect_ratio: _Optional[str] = ..., auto_scale_input: _Optional[bool] = ..., split_input_into_scenes: _Optional[bool] = ..., split_input_duration_threshold: _Optional[float] = ..., validation: _Optional[_Iterable[_Union[A2VValidation, _Mapping]]] = ..., validation_negative_prompt: _Optional[str] = ..., validation_number_of_frames: _Optional[int] = ..., validation_frame_rate: _Optional[int] = ..., validation_resolution: _Optional[str] = ..., validation_aspect_ratio: _Optional[str] = ..., stg_scale: _Optional[float] = ..., debug_dataset: _Optional[bool] = ...) -> None: ...

class JobParams(_message.Message):
    __slots__ = ("v2a", "av2av", "a2v")
    V2A_FIELD_NUMBER: _ClassVar[int]
    AV2AV_FIELD_NUMBER: _ClassVar[int]
    A2V_FIELD_NUMBER: _ClassVar[int]
    v2a: V2AParams
    av2av: AV2AVParams
    a2v: A2VParams
    def __init__(self, v2a: _Optional[_Union[V2AParams, _Mapping]] = ..., av2av: _Optional[_Union[AV2AVParams, _Mapping]] = ..., a2v: _Optional[_Union[A2VParams, _Mapping]] = ...) -> None: ...
