"""Validation media (fetched by ingest into the Manifest's validation list), checked and fitted at
the validation settings.

* v2a: the validation video is the silent conditioning; it needs no audio.
* av2av: the reference video is scaled exactly like the training references; its audio reference
  is `reference_audio_url`'s file when given, else the reference video's own track: a reference
  video without audio and without `reference_audio_url` is refused.
* Length: a validation clip is always fitted to validation_number_of_frames at
  validation_frame_rate as if auto_scale_input were on (its first seconds when long enough,
  slowed down to fill the frames when shorter): a preview is never refused for its length."""

from dataclasses import dataclass
from pathlib import PurePosixPath

import numpy as np

from avlora.params import JobParams
from avlora.store import LocalFiles, store_key
from avlora.v1 import dataset_pb2
from avlora.stage import UserError
from services.preprocess.clips import FitSettings, fit_frames, fit_reference_frames, fit_source_audio, target_crop
from services.preprocess.fitting import training_window
from services.preprocess.plan import ClipSource
from services.preprocess.probe import probe_media


@dataclass(frozen=True)
class ValidationItem:
    index: int
    prompt: str
    video: ClipSource               # v2a: the silent video; av2av: the reference video
    audio: ClipSource | None        # av2av: the audio reference


@dataclass
class FittedValidation:
    index: int
    prompt: str
    frames: np.ndarray              # v2a: the video at the validation size; av2av: the scaled reference
    audio: np.ndarray | None        # av2av: the reference audio [2, samples] at 16 kHz


def plan_validation(manifest: dataset_pb2.Manifest, params: JobParams,
                    local: LocalFiles) -> tuple[list[ValidationItem], list[str]]:
    """The validation items and one error per unusable entry."""
    items, errors = [], []
    settings = FitSettings.validation(params)
    for media in manifest.validation:
        label = f"validation[{media.index}]"
        try:
            items.append(_validation_item(media, params.mode, settings, local, label))
        except UserError as error:
            errors.append(f"{label}: {error}")
    return items, errors


def _validation_item(media, mode: str, settings: FitSettings, local: LocalFiles, label: str) -> ValidationItem:
    video_name = PurePosixPath(store_key(media.video_uri)).name
    info = probe_media(local(media.video_uri), video_name)
    video = ClipSource(video_name, info, _window(info.duration, settings))
    if mode == "v2a":
        return ValidationItem(media.index, media.prompt, video, None)
    if media.audio_uri:
        audio_name = PurePosixPath(store_key(media.audio_uri)).name
        audio_info = probe_media(local(media.audio_uri), audio_name, need_video=False)
        if not audio_info.has_audio:
            raise UserError(f"the reference audio {audio_name} has no audio track")
        return ValidationItem(media.index, media.prompt, video,
                              ClipSource(audio_name, audio_info, _window(audio_info.duration, settings)))
    if not info.has_audio:
        raise UserError(f"the reference video {video_name} has no audio track and no reference_audio_url "
                        "was given (the audio reference is taken from the reference video's own track)")
    return ValidationItem(media.index, media.prompt, video, video)


def _window(duration: float, settings: FitSettings):
    return training_window(duration, settings.frames, settings.frame_rate, auto_scale=True)


def fit_validation(item: ValidationItem, settings: FitSettings) -> FittedValidation:
    crop = target_crop(item.video, settings)
    if item.audio is None:
        return FittedValidation(item.index, item.prompt, fit_frames(item.video, settings, crop), None)
    return FittedValidation(item.index, item.prompt, fit_reference_frames(item.video, settings, crop),
                            fit_source_audio(item.audio, settings))
