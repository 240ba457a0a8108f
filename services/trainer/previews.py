"""Validation previews: each validation entry (or, with none, a held-out training sample) is
sampled with the current LoRA and decoded; the strategy writes them (a generated video: one MP4
reel with its sound; else one WAV of all samples). At the end the same samples are rendered once more with the LoRA off (the base
model, same seed, noise and guidance): services/trainer/evidence.py. The decoders live on the host
and visit the GPU only while a preview decodes."""

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from avlora.model.encode import audio_latent_count, decode_audio, decode_video
from services.trainer.data import Sample
from services.trainer.media import fit_duration
from services.trainer.sampling import generate
from services.trainer.tokens import encode_text


@dataclass
class PreviewItem:
    conditioning: Sample
    fps: int
    grid: tuple[int, int, int] | None = None  # the latent grid of a video generated from sound alone


def latent_grid(vae, frames: int, size: tuple[int, int]) -> tuple[int, int, int]:
    """The latent grid (F', H', W') of `frames` frames at `size` (width, height) through the video VAE."""
    spatial, temporal = vae.spatial_compression_ratio, vae.temporal_compression_ratio
    return (frames - 1) // temporal + 1, size[1] // spatial, size[0] // spatial


def pixel_frames(shape: tuple[int, int, int]) -> int:
    return (shape[0] - 1) * 8 + 1


@contextmanager
def visiting(modules, device: torch.device):
    """The modules on `device` for the duration, back on their own device afterwards."""
    homes = [next(m.parameters()).device for m in modules]
    for module in modules:
        module.to(device)
    try:
        yield
    finally:
        for module, home in zip(modules, homes):
            module.to(home)
        if device.type == "cuda":
            torch.cuda.empty_cache()


@contextmanager
def lora_disabled(transformer):
    """The base model: the transformer's LoRA layers bypassed (peft), back on afterwards."""
    transformer.disable_adapters()
    try:
        yield
    finally:
        transformer.enable_adapters()


@dataclass
class PreviewClip:
    """One rendered validation sample: its sound (generated, or the conditioning's decoded), the
    generated video and the picture the sound belongs to (a frozen video: the validation video as
    the model sees it, decoded; else the generated video)."""
    sound: np.ndarray                     # float32 [2, n] at the vocoder's rate
    video: torch.Tensor | None = None     # uint8 [F, H, W, 3]
    picture: torch.Tensor | None = None


class PreviewRenderer:
    def __init__(self, model, strategy, negative_prompt, steps: int, stg_scale: float, autocast, seed: int = 0):
        self.model, self.strategy, self.steps, self.stg_scale = model, strategy, steps, stg_scale
        self.autocast, self.seed = autocast, seed
        self.negative_prompt = negative_prompt

    @property
    def rate(self) -> int:
        return self.model.vocoder.config.output_sampling_rate

    def clips(self, items: list[PreviewItem], should_stop=lambda: False,
              progress=lambda done, total, message: None, label: str = "preview") -> list[PreviewClip]:
        """Samples and decodes every item with the transformer as it is now; `progress(step, steps,
        "<label> i/n")` after every sampling step. Every call starts from the same seed: the same
        items get the same noise."""
        model, device = self.model, self.model.transformer.device
        generator = torch.Generator().manual_seed(self.seed)
        negative = encode_text(model.connectors, self.negative_prompt)
        generated = []  # sampled latents first, then each decoder visits the GPU once for all items
        for number, item in enumerate(items, 1):
            conditioning = item.conditioning.to(device, torch.float32)
            shape = self.strategy.target_shape(conditioning, item.grid)
            frames = pixel_frames(shape)
            audio_count = (conditioning.ref_audio.shape[2] if conditioning.ref_audio is not None
                           else audio_latent_count(frames, item.fps))
            text = encode_text(model.connectors, conditioning.prompt)
            step_label = f"{label} {number}/{len(items)}"
            result = generate(model, self.strategy, conditioning, text, negative, item.fps, shape, audio_count,
                              self.steps, self.stg_scale, generator, self.autocast, should_stop,
                              on_step=lambda done, total: progress(done, total, step_label))
            generated.append((result, frames / item.fps))
        with visiting([model.audio_vae, model.vocoder], device):
            clips = [PreviewClip(fit_duration(decode_audio(model.audio_vae, model.vocoder, result.audio[0]),
                                              seconds, self.rate))
                     for result, seconds in generated]
        if self.strategy.decodes_video:
            with visiting([model.vae], device):
                for clip, (result, _) in zip(clips, generated):
                    clip.video = clip.picture = decode_video(model.vae, result.video[0])
        return clips

    def pictures(self, items: list[PreviewItem]) -> list[torch.Tensor]:
        """A frozen video: the validation videos as the model sees them (their latents decoded)."""
        with visiting([self.model.vae], self.model.transformer.device):
            return [decode_video(self.model.vae, item.conditioning.video[0]) for item in items]

    def write(self, clips: list[PreviewClip], out_path: Path, fps: int) -> Path:
        return self.strategy.write_preview(out_path, [(clip.video, clip.sound) for clip in clips], fps, self.rate)

    def render(self, items: list[PreviewItem], out_path: Path, should_stop=lambda: False,
               progress=lambda done, total, message: None) -> Path:
        """Writes the preview for these items to out_path."""
        return self.write(self.clips(items, should_stop, progress), out_path, items[0].fps)


def render_to_store(renderer: PreviewRenderer, items: list[PreviewItem], store, key: str,
                    should_stop=lambda: False, progress=lambda done, total, message: None) -> str:
    """Renders into a temporary file and puts it in the store atomically; returns its URI."""
    return store.put_written(key, lambda path: renderer.render(items, path, should_stop, progress))
