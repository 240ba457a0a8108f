"""The flow-matching loss over the generated streams, and a validation loss with fixed noise and
sigmas (so that values from different steps compare)."""

from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from services.trainer.tokens import Stream, Text, predict, sample_sigma

VALIDATION_SIGMAS = (0.2, 0.4, 0.6, 0.8)
VALIDATION_SEED = 1234


@dataclass
class Noise:
    """Each generated modality's own sigma and noise (frozen modalities get sigma 0)."""
    video_sigma: float
    audio_sigma: float
    video: torch.Tensor
    audio: torch.Tensor


def draw_noise(video: Stream, audio: Stream, generator: torch.Generator,
               sigmas: tuple[float, float] | None = None) -> Noise:
    """Noise on the CPU generator (reproducible on any device); sigmas drawn per modality from the
    shifted logit-normal of that modality's token count, unless given as (video, audio)."""
    video_sigma = (sigmas[0] if sigmas else sample_sigma(video.count, generator)) if video.generated else 0.0
    audio_sigma = (sigmas[1] if sigmas else sample_sigma(audio.count, generator)) if audio.generated else 0.0
    return Noise(video_sigma, audio_sigma,
                 torch.randn(video.target.shape, generator=generator).to(video.target.device),
                 torch.randn(audio.target.shape, generator=generator).to(audio.target.device))


def diffusion_loss(transformer, text: Text, video: Stream, audio: Stream,
                   noise: Noise) -> tuple[torch.Tensor, dict[str, float]]:
    """MSE between the predicted and true velocity (noise - clean), on the target tokens of the
    generated streams only; returns (total, {"video_loss"?, "audio_loss"?})."""
    video_state = (1 - noise.video_sigma) * video.target + noise.video_sigma * noise.video
    audio_state = (1 - noise.audio_sigma) * audio.target + noise.audio_sigma * noise.audio
    video_pred, audio_pred = predict(transformer, text, video, audio, video_state, audio_state,
                                     noise.video_sigma, noise.audio_sigma)
    parts = {}
    if video.generated:
        parts["video_loss"] = F.mse_loss(video_pred.float(), (noise.video - video.target).float())
    if audio.generated:
        parts["audio_loss"] = F.mse_loss(audio_pred.float(), (noise.audio - audio.target).float())
    total = sum(parts.values())
    return total, {name: float(value.detach()) for name, value in parts.items()}


@torch.no_grad()
def validation_loss(transformer, held_out: Iterable[tuple[Text, Stream, Stream]], autocast) -> float:
    """The mean loss of each held-out (text, video, audio) at each of VALIDATION_SIGMAS, with noise
    from a fixed seed (so values from different steps compare). `held_out` may be prepared lazily."""
    generator = torch.Generator().manual_seed(VALIDATION_SEED)
    total, count = 0.0, 0
    for text, video, audio in held_out:
        for sigma in VALIDATION_SIGMAS:
            noise = draw_noise(video, audio, generator, (sigma, sigma))
            with autocast():
                loss, _ = diffusion_loss(transformer, text, video, audio, noise)
            total, count = total + float(loss), count + 1
    return total / max(1, count)
