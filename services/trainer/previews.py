"""Validation previews: each validation entry (or, with none, a held-out training sample) is
sampled with the current LoRA and decoded; the strategy writes them (v2a one WAV of all samples,
av2av one MP4 reel). The decoders live on the host and visit the GPU only while a preview decodes."""

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

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


class PreviewRenderer:
    def __init__(self, model, strategy, negative_prompt, steps: int, stg_scale: float, autocast, seed: int = 0):
        self.model, self.strategy, self.steps, self.stg_scale = model, strategy, steps, stg_scale
        self.autocast, self.seed = autocast, seed
        self.negative_prompt = negative_prompt

    def render(self, items: list[PreviewItem], out_path: Path, should_stop=lambda: False,
               progress=lambda done, total, message: None) -> Path:
        """Writes the preview for these items to out_path; `progress(step, steps, "preview i/n")`
        after every sampling step."""
        model, device = self.model, self.model.transformer.device
        generator = torch.Generator().manual_seed(self.seed)
        rate = model.vocoder.config.output_sampling_rate
        negative = encode_text(model.connectors, self.negative_prompt)
        generated = []  # sampled latents first, then each decoder visits the GPU once for all items
        for number, item in enumerate(items, 1):
            conditioning = item.conditioning.to(device, torch.float32)
            shape = self.strategy.target_shape(conditioning)
            frames = pixel_frames(shape)
            audio_count = (conditioning.ref_audio.shape[2] if conditioning.ref_audio is not None
                           else audio_latent_count(frames, item.fps))
            text = encode_text(model.connectors, conditioning.prompt)
            label = f"preview {number}/{len(items)}"
            result = generate(model, self.strategy, conditioning, text, negative, item.fps, shape, audio_count,
                              self.steps, self.stg_scale, generator, self.autocast, should_stop,
                              on_step=lambda done, total: progress(done, total, label))
            generated.append((result, frames / item.fps))
        with visiting([model.audio_vae, model.vocoder], device):
            sounds = [fit_duration(decode_audio(model.audio_vae, model.vocoder, result.audio[0]), seconds, rate)
                      for result, seconds in generated]
        videos = [None] * len(generated)
        if self.strategy.decodes_video:
            with visiting([model.vae], device):
                videos = [decode_video(model.vae, result.video[0]) for result, _ in generated]
        clips = list(zip(videos, sounds))
        return self.strategy.write_preview(out_path, clips, items[0].fps, rate)


def render_to_store(renderer: PreviewRenderer, items: list[PreviewItem], store, key: str,
                    should_stop=lambda: False, progress=lambda done, total, message: None) -> str:
    """Renders into a temporary file and puts it in the store atomically; returns its URI."""
    return store.put_written(key, lambda path: renderer.render(items, path, should_stop, progress))
