"""The one schema of job parameters: every parameter of the seed pages with its default, range
and enum, the frame snapping and the reference-factor rules. The gRPC layer converts to and from
the protobuf messages; everything else reads these models."""

import re
from typing import Annotated, Literal

from google.protobuf import json_format
from pydantic import (BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator,
                      model_validator)

from avlora.v1 import params_pb2

Mode = Literal["v2a", "av2av"]
ResolutionName = Literal["low", "medium", "high"]
AspectRatio = Literal["16:9", "1:1", "9:16"]

# The seeds' resolution table: (width, height).
RESOLUTION_BUCKETS: dict[tuple[str, str], tuple[int, int]] = {
    ("low", "16:9"): (512, 288), ("low", "1:1"): (512, 512), ("low", "9:16"): (288, 512),
    ("medium", "16:9"): (768, 448), ("medium", "1:1"): (768, 768), ("medium", "9:16"): (448, 768),
    ("high", "16:9"): (960, 544), ("high", "1:1"): (960, 960), ("high", "9:16"): (544, 960),
}

# Price per billable unit, by mode (seed pages: "0.0049 * steps", "0.0068 * steps").
UNIT_PRICE: dict[str, float] = {"v2a": 0.0049, "av2av": 0.0068}

DEFAULT_NEGATIVE_PROMPT = (
    "worst quality, low quality, inconsistent motion, blurry, jittery, distorted, watermark, "
    "text, muffled audio, distorted audio, noise, clipping, silence"
)


# Text limits, checked at create time (a longer value is INVALID_ARGUMENT naming the field).
MAX_URL_CHARS = 2048
MAX_TRIGGER_CHARS = 200
MAX_PROMPT_CHARS = 4000
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")
Url = Annotated[str, Field(min_length=1, max_length=MAX_URL_CHARS)]
Prompt = Annotated[str, Field(max_length=MAX_PROMPT_CHARS)]


def checked_url(url: str | None) -> str | None:
    """A URL the ingest stage can fetch: http(s):// or upload://, no control characters."""
    if url is None:
        return url
    if _CONTROL_CHARACTERS.search(url):
        raise ValueError("must not contain control characters (CR, LF, ...)")
    if not url.startswith(("http://", "https://", "upload://")):
        raise ValueError("must be an http://, https:// or upload:// URL")
    return url


def snap_frames(frames: int) -> int:
    """Snaps a frame count down to the nearest value with frames % 8 == 1."""
    return frames - ((frames - 1) % 8)


def billable_units(number_of_steps: int) -> int:
    """A successful run is billed max(100, number_of_steps) units."""
    return max(100, number_of_steps)


class V2AValidation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prompt: Prompt = ""
    video_url: Url

    _urls = field_validator("video_url")(checked_url)


class AV2AVValidation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prompt: Prompt = ""
    reference_video_url: Url
    reference_audio_url: Annotated[str, Field(max_length=MAX_URL_CHARS)] | None = None

    _urls = field_validator("reference_video_url", "reference_audio_url")(checked_url)


class CommonParams(BaseModel):
    """Parameters both seed pages share, with their defaults and ranges."""

    model_config = ConfigDict(extra="forbid", validate_default=True)

    training_data_url: Url
    trigger_phrase: str = Field("", max_length=MAX_TRIGGER_CHARS)
    rank: Literal[8, 16, 32, 64, 128] = 32
    number_of_steps: int = Field(2000, ge=100, le=20000)
    learning_rate: float = Field(0.0002, gt=0, le=1.0)
    number_of_frames: int = Field(89, ge=9, le=121)
    frame_rate: int = Field(24, ge=8, le=60)
    resolution: ResolutionName = "medium"
    aspect_ratio: AspectRatio = "1:1"
    auto_scale_input: bool = False
    split_input_into_scenes: bool = False
    split_input_duration_threshold: float = Field(30.0, ge=1.0, le=60.0)
    validation_negative_prompt: Prompt = DEFAULT_NEGATIVE_PROMPT
    validation_number_of_frames: int = Field(89, ge=9, le=121)
    validation_frame_rate: int = Field(24, ge=8, le=60)
    validation_resolution: ResolutionName = "high"
    validation_aspect_ratio: AspectRatio = "1:1"
    stg_scale: float = Field(1.0, ge=0.0, le=3.0)
    debug_dataset: bool = False

    _urls = field_validator("training_data_url")(checked_url)

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


class V2AParams(CommonParams):
    mode: Literal["v2a"] = "v2a"
    validation: list[V2AValidation] = Field(default_factory=list, max_length=2)


class AV2AVParams(CommonParams):
    mode: Literal["av2av"] = "av2av"
    reference_downscale_factor: int = Field(1, ge=1, le=8)
    reference_temporal_scale_factor: int = Field(1, ge=1, le=8)
    audio_normalize: bool = True
    audio_preserve_pitch: bool = True
    validation: list[AV2AVValidation] = Field(default_factory=list, max_length=2)

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


JobParams = V2AParams | AV2AVParams


def urls_of(params: JobParams) -> dict[str, str]:
    """Every URL of a job, by field path (training_data_url, validation.0.video_url, ...)."""
    urls = {"training_data_url": params.training_data_url}
    for index, item in enumerate(params.validation):
        for name, value in item.model_dump().items():
            if name.endswith("_url") and value:
                urls[f"validation.{index}.{name}"] = value
    return urls


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
        raise InvalidParams("params: exactly one of v2a or av2av is required")
    data = json_format.MessageToDict(getattr(message, mode), preserving_proto_field_name=True)
    model = V2AParams if mode == "v2a" else AV2AVParams
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise InvalidParams(_describe(error)) from None


def to_proto(params: JobParams) -> params_pb2.JobParams:
    """The effective parameters as a JobParams message, every field set."""
    data = params.model_dump(exclude={"mode"}, exclude_none=True)
    inner = params_pb2.V2AParams if params.mode == "v2a" else params_pb2.AV2AVParams
    return params_pb2.JobParams(**{params.mode: inner(**data)})  # 10x faster than json_format


_STORED = TypeAdapter(Annotated[V2AParams | AV2AVParams, Field(discriminator="mode")])


def from_json(text: str) -> JobParams:
    """Reads parameters stored by `params.model_dump_json()`."""
    return _STORED.validate_json(text)
