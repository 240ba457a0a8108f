"""Fitted media -> the tensors the trainer reads (keys in avlora.model.cache), through the
encoders of avlora.model. One safetensors file per training item, validation item and the
negative prompt. A sample's `should_stop` is asked before each layer of the video VAE's encoder
runs (on a CPU a long clip is encoded tile after tile for minutes): JobCancelled within seconds."""

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

from avlora.model.components import load_encoders
from avlora.model.encode import audio_latent_count, encode_audio, encode_video
from services.preprocess.cancel import ShouldStop, stop_if_asked
from services.preprocess.clips import FitSettings
from services.preprocess.items import FittedClip, FittedValidation, Media

Tensors = dict[str, torch.Tensor]
# The largest clip a CPU encodes whole (by whole_encoding_bytes); larger ones are tiled. With the
# rest of a preprocess worker this keeps its peak under 4 GB (bench/preprocess_memory.py).
WHOLE_ENCODING_LIMIT_BYTES = 2 * 2**30


class DatasetEncoder:
    """The frozen encoders (video VAE, audio VAE, text encoder), loaded once per job."""

    def __init__(self, model_dir: str):
        device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = torch.bfloat16 if device == "cuda" else torch.float32
        self.encoders = load_encoders(model_dir, device, dtype)
        # on a CPU, clips whose whole encoding would hold more than this are tiled (None: never tiled)
        self.whole_encoding_limit_bytes = WHOLE_ENCODING_LIMIT_BYTES if device == "cpu" else None

    def prompt(self, text: str) -> Tensors:
        """The prompt keys (the valid rows of the projected features, and the mask) of one prompt."""
        return self.encoders.caption(text)

    def video(self, frames: np.ndarray, should_stop: ShouldStop | None = None) -> torch.Tensor:
        vae = self.encoders.vae
        if self.whole_encoding_limit_bytes is not None:
            # On a CPU the VAE's activations are process memory (a 121-frame 960x960 clip needs
            # over 18 GB whole): a clip too large to encode whole is encoded in overlapping tiles of
            # 16 frames x 512 px, blended. Smaller clips are encoded whole, since tiles encode their
            # overlaps twice (1.7-2.3x the time). diffusers gates temporal tiling of encoding on
            # use_framewise_decoding.
            vae.use_tiling = vae.use_framewise_decoding = (
                whole_encoding_bytes(vae, *frames.shape[:3]) > self.whole_encoding_limit_bytes)
        with stoppable(vae.encoder, should_stop):
            return encode_video(vae, torch.from_numpy(frames)).cpu()

    def audio(self, audio: np.ndarray, settings: FitSettings) -> torch.Tensor:
        latents = audio_latent_count(settings.frames, settings.frame_rate)
        return encode_audio(self.encoders.audio_vae, torch.from_numpy(audio), num_latents=latents).cpu()

    def latents(self, media: Media, settings: FitSettings, should_stop: ShouldStop | None = None) -> Tensors:
        """Each fitted medium encoded under its cache key (`<key>_latents`: avlora.model.cache)."""
        return {f"{key}_latents": self.video(value, should_stop) if key.endswith("video") else self.audio(value, settings)
                for key, value in media.items()}

    def training_sample(self, clip: FittedClip, settings: FitSettings,
                        should_stop: ShouldStop | None = None) -> Tensors:
        return self.latents(clip.media, settings, should_stop) | self.prompt(clip.caption)

    def validation_sample(self, fitted: FittedValidation, settings: FitSettings,
                          should_stop: ShouldStop | None = None) -> Tensors:
        return self.latents(fitted.media, settings, should_stop) | self.prompt(fitted.prompt)


def whole_encoding_bytes(vae, frames: int, height: int, width: int) -> int:
    """The activations the video VAE's encoder holds at its peak, encoding a clip whole: about 20
    bytes per channel at the encoder's full (patchified) resolution for each of its input pixels
    (measured with the tiny model's VAE, 128 such channels and 4x4 patches, on the CPU: 147-155 bytes
    per pixel at 25x288x512 and 49x544x960)."""
    config = vae.config
    widest = max(config.latent_channels, config.block_out_channels[0])
    return frames * height * width * widest * 20 // config.patch_size**2


@contextmanager
def stoppable(model: torch.nn.Module, should_stop: ShouldStop | None) -> Iterator[None]:
    """While inside, `should_stop` is asked before each layer of `model` runs."""
    if should_stop is None:
        yield
        return
    handles = [layer.register_forward_pre_hook(lambda *_: stop_if_asked(should_stop)) for layer in model.modules()]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
