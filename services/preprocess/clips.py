"""Fitting a planned item into exactly what the model sees: frames in the resolution bucket at the
target rate, audio over the same time, and for av2av the scaled reference.

Reference scaling (av2av): the reference clip gets the target's crop, is resized to the bucket
divided by `reference_downscale_factor`, and keeps frame 0 then every Nth frame of the fitted
sequence (N = `reference_temporal_scale_factor`), so it lasts as long as the target at
frame_rate / N. Its audio is the reference clip's own, over the same time as its frames."""

from dataclasses import dataclass

import numpy as np

from avlora.params import AV2AVParams, JobParams
from services.preprocess.audio import fit_audio
from services.preprocess.fitting import Crop, fill_crop, fit_video, sample_times
from services.preprocess.plan import ClipSource, TrainingItem


@dataclass(frozen=True)
class FitSettings:
    """How media is fitted: the training settings or the validation settings of a job."""

    frames: int
    frame_rate: int
    size: tuple[int, int]          # (width, height)
    normalize: bool                # peak-normalise audio (av2av audio_normalize)
    preserve_pitch: bool           # when stretching audio (v2a: always)
    downscale: int = 1             # reference_downscale_factor
    temporal: int = 1              # reference_temporal_scale_factor

    @classmethod
    def training(cls, params: JobParams) -> "FitSettings":
        return cls(params.number_of_frames, params.frame_rate, params.size, *_audio_and_reference(params))

    @classmethod
    def validation(cls, params: JobParams) -> "FitSettings":
        return cls(params.validation_number_of_frames, params.validation_frame_rate, params.validation_size,
                   *_audio_and_reference(params))

    @property
    def reference_size(self) -> tuple[int, int]:
        return self.size[0] // self.downscale, self.size[1] // self.downscale

    @property
    def reference_frame_rate(self) -> float:
        return self.frame_rate / self.temporal


def _audio_and_reference(params: JobParams) -> tuple[bool, bool, int, int]:
    if isinstance(params, AV2AVParams):
        return (params.audio_normalize, params.audio_preserve_pitch, params.reference_downscale_factor,
                params.reference_temporal_scale_factor)
    return False, True, 1, 1


@dataclass
class FittedClip:
    name: str
    caption: str
    frames: np.ndarray                     # uint8 [F, H, W, 3] at frame_rate
    audio: np.ndarray                      # float32 [2, samples] at 16 kHz, F / frame_rate seconds
    reference_frames: np.ndarray | None = None   # av2av: uint8 [(F - 1) / N + 1, H / f, W / f, 3]
    reference_audio: np.ndarray | None = None    # av2av: float32 [2, samples]


def target_crop(source: ClipSource, settings: FitSettings) -> Crop:
    return fill_crop(source.info.width, source.info.height, *settings.size)


def fit_frames(source: ClipSource, settings: FitSettings, crop: Crop) -> np.ndarray:
    return fit_video(source.info, sample_times(source.window, settings.frames, settings.frame_rate), crop,
                     settings.size)


def fit_reference_frames(source: ClipSource, settings: FitSettings, crop: Crop) -> np.ndarray:
    times = sample_times(source.window, settings.frames, settings.frame_rate)[:: settings.temporal]
    return fit_video(source.info, times, crop, settings.reference_size)


def fit_source_audio(source: ClipSource, settings: FitSettings) -> np.ndarray:
    return fit_audio(source.info, source.window, settings.normalize, settings.preserve_pitch)


def fit_item(item: TrainingItem, settings: FitSettings) -> FittedClip:
    crop = target_crop(item.target, settings)
    clip = FittedClip(item.name, item.caption, fit_frames(item.target, settings, crop),
                      fit_source_audio(item.target, settings))
    if item.reference is not None:
        clip.reference_frames = fit_reference_frames(item.reference, settings, crop)
        clip.reference_audio = fit_source_audio(item.reference, settings)
    return clip
