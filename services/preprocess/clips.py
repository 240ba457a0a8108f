"""Fitting a planned source into exactly what the model sees: frames in the resolution bucket at
the target rate, audio over the same time, and for av2av the scaled reference.

Reference scaling (av2av): the reference clip gets the target's crop, is resized to the bucket
divided by `reference_downscale_factor`, and with N = `reference_temporal_scale_factor` keeps the
fitted frames [0, 1, 1 + N, 1 + 2N, ...] (Lightricks' rule: frame 0 is the VAE's stand-alone first
latent frame), so it lasts as long as the target at frame_rate / N. Its audio is the reference
clip's own, over the same time as its frames.

Every frame loop takes `should_stop`: a cancelled job stops within one decoded frame."""

from dataclasses import dataclass

import numpy as np

from services.preprocess.audio import fit_audio
from services.preprocess.cancel import ShouldStop
from services.preprocess.fitting import Crop, fill_crop, fit_video, sample_times
from services.preprocess.items import ClipSource


@dataclass(frozen=True)
class FitSettings:
    """How media is fitted: the training settings or the validation settings of a job (built by
    the job's mode, `services.preprocess.modes`)."""

    frames: int
    frame_rate: int
    size: tuple[int, int]          # (width, height)
    normalize: bool                # peak-normalise audio (CommonParams.audio_fit)
    preserve_pitch: bool           # when stretching audio
    downscale: int = 1             # reference_downscale_factor
    temporal: int = 1              # reference_temporal_scale_factor

    @property
    def reference_size(self) -> tuple[int, int]:
        return self.size[0] // self.downscale, self.size[1] // self.downscale


def reference_frame_indices(frames: int, factor: int) -> list[int]:
    """The fitted frames a reference keeps, as Lightricks' IC-LoRA: [0, 1, 1 + factor, 1 + 2 factor, ...]."""
    return [0, *range(1, frames, factor)]


def target_crop(source: ClipSource, settings: FitSettings) -> Crop:
    return fill_crop(source.info.width, source.info.height, *settings.size)


def fit_frames(source: ClipSource, settings: FitSettings, crop: Crop,
               should_stop: ShouldStop | None = None) -> np.ndarray:
    return fit_video(source.info, sample_times(source.window, settings.frames, settings.frame_rate), crop,
                     settings.size, should_stop)


def fit_reference_frames(source: ClipSource, settings: FitSettings, crop: Crop,
                         should_stop: ShouldStop | None = None) -> np.ndarray:
    times = sample_times(source.window, settings.frames, settings.frame_rate)
    kept = [times[index] for index in reference_frame_indices(settings.frames, settings.temporal)]
    return fit_video(source.info, kept, crop, settings.reference_size, should_stop)


def fit_source_audio(source: ClipSource, settings: FitSettings) -> np.ndarray:
    return fit_audio(source.info, source.window, settings.normalize, settings.preserve_pitch)
