"""Validation previews: each validation entry (or, with none, a held-out training sample) is
sampled with the current LoRA and decoded; v2a gives one WAV of all samples, av2av one MP4 reel."""

from dataclasses import dataclass
from pathlib import Path

import torch

from avlora.model.encode import audio_latent_count, decode_audio, decode_video
from services.trainer.data import Sample
from services.trainer.media import fit_duration, write_reel, write_wav
from services.trainer.sampling import generate
from services.trainer.tokens import encode_text


@dataclass
class PreviewItem:
    conditioning: Sample
    fps: int


def target_shape(conditioning: Sample, spatial: int, temporal: int) -> tuple[int, int, int]:
    """The generated video's latent grid: v2a the input video's; av2av the reference's, scaled back up."""
    if conditioning.video is not None:
        return tuple(conditioning.video.shape[2:])
    frames, height, width = conditioning.ref_video.shape[2:]
    return ((frames - 1) * temporal + 1, height * spatial, width * spatial)


def pixel_frames(shape: tuple[int, int, int]) -> int:
    return (shape[0] - 1) * 8 + 1


class PreviewRenderer:
    def __init__(self, model, strategy, negative_prompt, steps: int, stg_scale: float, autocast, seed: int = 0):
        self.model, self.strategy, self.steps, self.stg_scale = model, strategy, steps, stg_scale
        self.autocast, self.seed = autocast, seed
        self.negative = encode_text(model.connectors, negative_prompt)

    def render(self, items: list[PreviewItem], out_path: Path, should_stop=lambda: False) -> Path:
        """Writes the preview for these items (WAV for v2a, MP4 reel for av2av) to out_path."""
        device = self.model.transformer.device
        generator = torch.Generator().manual_seed(self.seed)
        rate = self.model.vocoder.config.output_sampling_rate
        spatial, temporal = (self.strategy.reference_downscale_factor, self.strategy.reference_temporal_scale_factor)
        clips = []
        for item in items:
            conditioning = item.conditioning.to(device, torch.float32)
            shape = target_shape(conditioning, spatial, temporal)
            frames = pixel_frames(shape)
            audio_count = (conditioning.ref_audio.shape[2] if conditioning.ref_audio is not None
                           else audio_latent_count(frames, item.fps))
            text = encode_text(self.model.connectors, conditioning.prompt)
            result = generate(self.model, self.strategy, conditioning, text, self.negative, item.fps, shape,
                              audio_count, self.steps, self.stg_scale, generator, self.autocast, should_stop)
            sound = fit_duration(decode_audio(self.model.audio_vae, self.model.vocoder, result.audio[0]),
                                 frames / item.fps, rate)
            video = decode_video(self.model.vae, result.video[0]) if self.strategy.mode == "av2av" else None
            clips.append((video, sound))
        if self.strategy.mode == "v2a":
            return write_wav(out_path, [sound for _, sound in clips], rate)
        return write_reel(out_path, clips, items[0].fps, rate)


def render_to_store(renderer: PreviewRenderer, items: list[PreviewItem], store, key: str,
                    should_stop=lambda: False) -> str:
    """Renders into a temporary file and puts it in the store atomically; returns its URI."""
    return store.put_written(key, lambda path: renderer.render(items, path, should_stop))
