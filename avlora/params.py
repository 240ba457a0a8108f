"""The one schema of job parameters: every parameter of the seed pages with its default, range
and enum, the frame snapping and the reference-factor rules. The gRPC layer converts to and from
the protobuf messages; everything else reads these models."""

import math
import re
from typing import Annotated, ClassVar, Literal, Union, get_args, get_origin

from google.protobuf import json_format
from pydantic import (BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator,
                      model_validator)

from pydantic.fields import FieldInfo

from avlora.netguard import redact_url
from avlora.store import UPLOAD_SCHEME
from avlora.v1 import params_pb2

ResolutionName = Literal["low", "medium", "high"]
AspectRatio = Literal["16:9", "1:1", "9:16"]

# The seeds' resolution table: (width, height).
RESOLUTION_BUCKETS: dict[tuple[str, str], tuple[int, int]] = {
    ("low", "16:9"): (512, 288), ("low", "1:1"): (512, 512), ("low", "9:16"): (288, 512),
    ("medium", "16:9"): (768, 448), ("medium", "1:1"): (768, 768), ("medium", "9:16"): (448, 768),
    ("high", "16:9"): (960, 544), ("high", "1:1"): (960, 960), ("high", "9:16"): (544, 960),
}

DEFAULT_NEGATIVE_PROMPT = (
    "worst quality, low quality, inconsistent motion, blurry, jittery, distorted, watermark, "
    "text, muffled audio, distorted audio, noise, clipping, silence"
)


def _bucket_table() -> str:
    """The resolution table in words: 'with aspect_ratio 16:9 / 1:1 / 9:16: low 512x288 / ...'."""
    ratios = get_args(AspectRatio)
    rows = [f"{name} " + " / ".join("%dx%d" % RESOLUTION_BUCKETS[(name, ratio)] for ratio in ratios)
            for name in get_args(ResolutionName)]
    return f"with aspect_ratio {' / '.join(ratios)}: " + ", ".join(rows)


def field_type(field: FieldInfo) -> type:
    """A field's plain type: a Literal's values' type (rank: int; resolution: str), else its annotation."""
    kind = field.annotation
    return type(get_args(kind)[0]) if get_origin(kind) is Literal else kind


def default_label(field: FieldInfo) -> str:
    """How help and docs name a field's default: the value, or a label for one too long to show."""
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    return str(extra.get("default_label") or field.get_default(call_default_factory=True))


def field_rules(field: FieldInfo) -> str:
    """A field's allowed values in words: 'one of 8, 16, 32', '100 to 20000', '> 0 and <= 1.0'."""
    if get_origin(field.annotation) is Literal:
        return "one of " + ", ".join(str(value) for value in get_args(field.annotation))
    bounds = {type(item).__name__: value for item in field.metadata
              for value in [getattr(item, name, None) for name in ("ge", "gt", "le", "lt", "max_length")]
              if value is not None}
    if "Ge" in bounds and "Le" in bounds:
        return f"{bounds['Ge']} to {bounds['Le']}"
    words = {"Ge": ">=", "Gt": ">", "Le": "<=", "Lt": "<", "MaxLen": "at most"}
    parts = [f"{words[kind]} {value}" for kind, value in bounds.items() if kind in words]
    if "MaxLen" in bounds and get_origin(field.annotation) is list:
        parts = [f"at most {bounds['MaxLen']} entries"]
    return " and ".join(parts)


# Text limits, checked at create time (a longer value is INVALID_ARGUMENT naming the field).
MAX_URL_CHARS = 2048
MAX_TRIGGER_CHARS = 200
MAX_PROMPT_CHARS = 4000
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


def checked_url(url: str | None) -> str | None:
    """A URL the ingest stage can fetch: http(s):// or upload://, no control characters."""
    if url is None:
        return url
    if _CONTROL_CHARACTERS.search(url):
        raise ValueError("must not contain control characters (CR, LF, ...)")
    if not url.startswith(("http://", "https://", "upload://")):
        raise ValueError("must be an http://, https:// or upload:// URL")
    return url


def finite_number(value):
    """Refuses NaN and infinities by name (the range rules would call NaN out of range)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return value  # not a number at all: pydantic's own message
    if math.isnan(number):
        raise ValueError(f"{value} is not a number")
    if math.isinf(number):
        raise ValueError(f"{value} is not a finite number")
    return value


def snap_frames(frames: int) -> int:
    """Snaps a frame count down to the nearest value with frames % 8 == 1."""
    return frames - ((frames - 1) % 8)


def billable_units(number_of_steps: int) -> int:
    """A successful run is billed max(100, number_of_steps) units."""
    return max(100, number_of_steps)


class ValidationSample(BaseModel):
    """One validation preview: a prompt, then the media it is made from (URLs, in field order)."""

    model_config = ConfigDict(extra="forbid")
    prompt: str = Field("", max_length=MAX_PROMPT_CHARS, description="the text prompt of the preview")

    @classmethod
    def media_fields(cls) -> dict[str, bool]:
        """The media URL fields, in order, each with whether it is required."""
        return {name: field.is_required() for name, field in cls.model_fields.items() if name != "prompt"}

    def media(self) -> dict[str, str]:
        """The files this entry names by kind ("video", "audio"), e.g. {"video": "https://..."}."""
        raise NotImplementedError

    def label(self, index: int, kind: str) -> str:
        """How messages name one of its files: 'validation[0] video https://host/clip.mp4' (no
        credentials, control characters escaped)."""
        return f"validation[{index}] {kind} {redact_url(self.media()[kind])}"


class V2AValidation(ValidationSample):
    video_url: str = Field(min_length=1, max_length=MAX_URL_CHARS,
                           description="a video the LoRA generates a soundtrack for")

    _urls = field_validator("video_url")(checked_url)

    def media(self) -> dict[str, str]:
        return {"video": self.video_url}


class AV2AVValidation(ValidationSample):
    reference_video_url: str = Field(min_length=1, max_length=MAX_URL_CHARS, description=(
        "the reference clip; its audio track is the audio reference unless reference_audio_url is given"))
    reference_audio_url: str | None = Field(None, max_length=MAX_URL_CHARS, description="a separate audio reference")

    _urls = field_validator("reference_video_url", "reference_audio_url")(checked_url)

    def media(self) -> dict[str, str]:
        return {"video": self.reference_video_url} | ({"audio": self.reference_audio_url}
                                                     if self.reference_audio_url else {})


class A2VValidation(ValidationSample):
    audio_url: str = Field(min_length=1, max_length=MAX_URL_CHARS, description=(
        "a sound the LoRA generates a picture for: wav, mp3, m4a, flac, or a video whose sound is used"))

    _urls = field_validator("audio_url")(checked_url)

    def media(self) -> dict[str, str]:
        return {"audio": self.audio_url}


class CommonParams(BaseModel):
    """Parameters both seed pages share, with their defaults and ranges."""

    model_config = ConfigDict(extra="forbid", validate_default=True)
    proto: ClassVar[type]  # the mode's message in params.proto

    training_data_url: str = Field(
        min_length=1, max_length=MAX_URL_CHARS, description="the .zip of training clips: an http(s):// URL or an upload:// reference")
    trigger_phrase: str = Field("", max_length=MAX_TRIGGER_CHARS, description="prepended to every caption; use it in prompts at inference")
    rank: Literal[8, 16, 32, 64, 128] = Field(32, description="LoRA rank: the adapter's capacity")
    number_of_steps: int = Field(2000, ge=100, le=20000,
                                 description="optimizer steps; billed as max(100, steps) units")
    learning_rate: float = Field(0.0002, gt=0, le=1.0, description="optimizer step size")
    number_of_frames: int = Field(89, ge=9, le=121, description=(
        "frames per training clip, snapped down to frames % 8 == 1 (90 becomes 89); shorter clips "
        "are skipped unless auto_scale_input"))
    frame_rate: int = Field(24, ge=8, le=60, description="frames per second clips are retimed to")
    resolution: ResolutionName = Field("medium", description=f"training size bucket; {_bucket_table()}")
    aspect_ratio: AspectRatio = Field("1:1", description="training aspect ratio; clips are scaled to fill it and centre-cropped")
    auto_scale_input: bool = Field(False, description=(
        "retime clips shorter than number_of_frames to fill it instead of skipping them"))
    split_input_into_scenes: bool = Field(False, description=(
        "cut clips longer than split_input_duration_threshold at scene changes (not av2av)"))
    split_input_duration_threshold: float = Field(30.0, ge=1.0, le=60.0, description=(
        "seconds above which a clip is split into scenes, when splitting is on"))
    validation_negative_prompt: str = Field(DEFAULT_NEGATIVE_PROMPT, max_length=MAX_PROMPT_CHARS, description=(
        "what validation previews steer away from"), json_schema_extra={"default_label": "the built-in list"})
    validation_number_of_frames: int = Field(89, ge=9, le=121, description=(
        "frames per validation preview, snapped down to frames % 8 == 1"))
    validation_frame_rate: int = Field(24, ge=8, le=60, description="frames per second of validation previews")
    validation_resolution: ResolutionName = Field("high", description=(
        "size bucket of validation previews (the same table as resolution)"))
    validation_aspect_ratio: AspectRatio = Field("1:1", description="aspect ratio of validation previews")
    stg_scale: float = Field(1.0, ge=0.0, le=3.0, description=(
        "spatio-temporal guidance strength of validation previews; 0 turns it off"))
    debug_dataset: bool = Field(False, description=(
        "also return an archive of the fitted clips, their audio and captions, for inspection"))

    _urls = field_validator("training_data_url")(checked_url)
    _finite = field_validator("learning_rate", "split_input_duration_threshold", "stg_scale", mode="before")(finite_number)

    @field_validator("number_of_frames", "validation_number_of_frames")
    @classmethod
    def _snap(cls, frames: int) -> int:
        return snap_frames(frames)

    @property
    def size(self) -> tuple[int, int]:
        """Training (width, height) from the resolution table."""
        return RESOLUTION_BUCKETS[(self.resolution, self.aspect_ratio)]

    @property
    def validation_size(self) -> tuple[int, int]:
        return RESOLUTION_BUCKETS[(self.validation_resolution, self.validation_aspect_ratio)]

    @property
    def reference_factors(self) -> tuple[int, int]:
        """(spatial, temporal): how much smaller and sparser a reference is than its target (1, 1
        without references)."""
        return 1, 1

    @property
    def audio_fit(self) -> tuple[bool, bool]:
        """(normalize, preserve_pitch) of fitted audio."""
        return False, True

    @classmethod
    def mode_name(cls) -> str:
        return cls.model_fields["mode"].default

    @classmethod
    def validation_model(cls) -> type[ValidationSample]:
        return get_args(cls.model_fields["validation"].annotation)[0]

    @classmethod
    def message(cls, values: dict) -> params_pb2.JobParams:
        """A JobParams message of this mode from plain field values (as JSON would spell them)."""
        return params_pb2.JobParams(**{cls.mode_name(): cls.proto(**values)})  # 10x faster than json_format


class V2AParams(CommonParams):
    """Video to audio (foley): the video is fixed conditioning; the LoRA learns to generate its soundtrack."""

    proto: ClassVar = params_pb2.V2AParams
    mode: Literal["v2a"] = "v2a"
    validation: list[V2AValidation] = Field(default_factory=list, max_length=2, description=(
        "up to 2 preview samples, each a prompt and a video to generate audio for"))


class AV2AVParams(CommonParams):
    """Audio+video to audio+video: a reference clip (video and audio) conditions a generated target clip."""

    proto: ClassVar = params_pb2.AV2AVParams
    mode: Literal["av2av"] = "av2av"
    reference_downscale_factor: int = Field(1, ge=1, le=8, description=(
        "shrink the reference video by this factor before encoding; width/factor and height/factor "
        "must be multiples of 32 at the training and validation sizes"))
    reference_temporal_scale_factor: int = Field(1, ge=1, le=8, description=(
        "keep every n-th reference frame; (frames - 1) / factor must be a multiple of 8 for both frame counts"))
    audio_normalize: bool = Field(True, description="peak-normalize every clip's audio")
    audio_preserve_pitch: bool = Field(True, description="keep the pitch when audio is stretched to a retimed clip")
    validation: list[AV2AVValidation] = Field(default_factory=list, max_length=2, description=(
        "up to 2 preview samples, each a prompt, a reference video and optionally a reference audio"))

    @property
    def reference_factors(self) -> tuple[int, int]:
        return self.reference_downscale_factor, self.reference_temporal_scale_factor

    @property
    def audio_fit(self) -> tuple[bool, bool]:
        return self.audio_normalize, self.audio_preserve_pitch

    @model_validator(mode="after")
    def _reference_rules(self) -> "AV2AVParams":
        if self.split_input_into_scenes:
            raise ValueError(
                "split_input_into_scenes: not available for av2av (scene splitting would desync "
                "the reference/target pair); provide pre-split clips instead")
        factor = self.reference_downscale_factor
        for label, (width, height) in (("training", self.size), ("validation", self.validation_size)):
            if width % factor or height % factor or (width // factor) % 32 or (height // factor) % 32:
                raise ValueError(
                    f"reference_downscale_factor: {factor} does not fit the {label} resolution "
                    f"{width}x{height}: width and height must be divisible by the factor and "
                    "width/factor and height/factor must each be divisible by 32")
        factor = self.reference_temporal_scale_factor
        for name in ("number_of_frames", "validation_number_of_frames"):
            frames = getattr(self, name)
            if (frames - 1) % factor or ((frames - 1) // factor) % 8:
                raise ValueError(
                    f"reference_temporal_scale_factor: {factor} does not fit {name}={frames}: "
                    f"(frames - 1) must be divisible by the factor and (frames - 1) / factor "
                    "must be a multiple of 8")
        return self


class A2VParams(CommonParams):
    """Audio to video: the soundtrack is fixed conditioning; the LoRA learns to generate the picture."""

    proto: ClassVar = params_pb2.A2VParams
    mode: Literal["a2v"] = "a2v"
    # Lightricks' a2v_lora.yaml (v2a and av2av keep the seeds' 2e-4)
    learning_rate: float = Field(0.0001, gt=0, le=1.0, description="optimizer step size")
    validation: list[A2VValidation] = Field(default_factory=list, max_length=2, description=(
        "up to 2 preview samples, each a prompt and a sound to generate a video for"))


JobParams = CommonParams  # one of MODES' classes


def foreign_upload(field: str, upload_id: str) -> str:
    """The error for an upload:// reference that is not the caller's (CreateJob, InspectDataset)."""
    return f"{field}: no upload upload://{upload_id} of this tenant"


def urls_of(params: JobParams) -> dict[str, str]:
    """Every URL of a job, by field path (training_data_url, validation.0.video_url, ...)."""
    urls = {"training_data_url": params.training_data_url}
    for index, item in enumerate(params.validation):
        for name, value in item.model_dump().items():
            if name.endswith("_url") and value:
                urls[f"validation.{index}.{name}"] = value
    return urls


def upload_refs(params: JobParams) -> dict[str, str]:
    """The upload ids a job names (its upload:// URLs), by field path."""
    return {field: url.removeprefix(UPLOAD_SCHEME) for field, url in urls_of(params).items()
            if url.startswith(UPLOAD_SCHEME)}


# Every mode's parameters by name: each subclass of CommonParams (and its message in params.proto);
# what the mode does is its entry in avlora.modes.
MODES: dict[str, type[CommonParams]] = {model.mode_name(): model for model in CommonParams.__subclasses__()}


class InvalidParams(ValueError):
    """A request that breaks a seed rule; the message names the field and the rule."""


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        field = ".".join(str(p) for p in item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        parts.append(message if not field or message.startswith(field) else f"{field}: {message}")
    return "; ".join(parts)


def from_proto(message: params_pb2.JobParams) -> JobParams:
    """Validates a JobParams message into the schema (defaults filled, frames snapped)."""
    mode = message.WhichOneof("mode")
    if mode is None:
        raise InvalidParams(f"params: exactly one of {' or '.join(MODES)} is required")
    data = json_format.MessageToDict(getattr(message, mode), preserving_proto_field_name=True)
    try:
        return MODES[mode].model_validate(data)
    except ValidationError as error:
        raise InvalidParams(_describe(error)) from None


def to_proto(params: JobParams) -> params_pb2.JobParams:
    """The effective parameters as a JobParams message, every field set."""
    return type(params).message(params.model_dump(exclude={"mode"}, exclude_none=True))


_STORED = TypeAdapter(Annotated[Union[tuple(MODES.values())], Field(discriminator="mode")])


def from_json(text: str) -> JobParams:
    """Reads parameters stored by `params.model_dump_json()`."""
    return _STORED.validate_json(text)
