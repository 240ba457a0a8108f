"""What preprocessing passes between its steps: planned sources and items, and the fitted media
that is encoded."""

from dataclasses import dataclass

import numpy as np

from services.preprocess.fitting import Window
from services.preprocess.probe import MediaInfo


@dataclass(frozen=True)
class ClipSource:
    """One source clip (or scene of one) and the window of it that is used."""

    label: str
    info: MediaInfo
    window: Window


@dataclass(frozen=True)
class TrainingItem:
    name: str                          # v2a: the video (or scene); av2av: the pair's base name
    caption: str                       # trigger phrase prepended
    target: ClipSource                 # v2a: the clip; av2av: the `_end` clip
    reference: ClipSource | None = None  # av2av: the `_start` clip


@dataclass(frozen=True)
class ValidationItem:
    index: int
    prompt: str
    video: ClipSource               # v2a: the silent video; av2av: the reference video
    audio: ClipSource | None        # av2av: the audio reference


@dataclass
class FittedClip:
    name: str
    caption: str
    frames: np.ndarray                     # uint8 [F, H, W, 3] at frame_rate
    audio: np.ndarray                      # float32 [2, samples] at 16 kHz, F / frame_rate seconds
    reference_frames: np.ndarray | None = None   # av2av: uint8 [1 + (F - 1) / N, H / f, W / f, 3]
    reference_audio: np.ndarray | None = None    # av2av: float32 [2, samples]


@dataclass
class FittedValidation:
    index: int
    prompt: str
    frames: np.ndarray              # v2a: the video at the validation size; av2av: the scaled reference
    audio: np.ndarray | None        # av2av: the reference audio [2, samples] at 16 kHz
