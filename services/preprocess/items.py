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
    name: str                          # the clip (or scene); a pair's base name
    caption: str                       # trigger phrase prepended
    target: ClipSource                 # the clip; a pair's `_end` clip
    reference: ClipSource | None = None  # a pair's `_start` clip


# Media by key: "video", "audio" (the clip's, or a validation entry's conditioning), "ref_video",
# "ref_audio" (a pair's `_start` clip, or a validation entry's reference). The cache keys are
# `<key>_latents` (avlora.model.cache).
Sources = dict[str, ClipSource]
Media = dict[str, np.ndarray]  # frames uint8 [F, H, W, 3] (a reference: [1 + (F - 1) / N, H / f, W / f, 3]);
                               # audio float32 [2, samples] at 16 kHz, F / frame_rate seconds


@dataclass(frozen=True)
class ValidationItem:
    index: int
    prompt: str
    media: Sources                 # the mode's conditioning (avlora.modes.Mode.conditioning)


@dataclass
class FittedClip:
    name: str
    caption: str
    media: Media                   # "video", "audio" and for a pair "ref_video", "ref_audio"


@dataclass
class FittedValidation:
    index: int
    prompt: str
    media: Media                   # the mode's conditioning
