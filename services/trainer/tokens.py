"""How a clip becomes the transformer's input: packed tokens, RoPE coordinates, per-token timesteps,
and the one forward call that training and sampling share."""

from dataclasses import dataclass

import torch
from diffusers import LTX2Pipeline

from services.trainer.data import Prompt

TIMESTEP_SCALE = 1000.0  # the transformer takes sigma * 1000 as its timestep


@dataclass
class Stream:
    """One modality's tokens. `target` is what is generated (noised in training) when `generated`,
    else it is frozen conditioning at timestep 0; `reference` tokens are appended at timestep 0."""
    target: torch.Tensor              # [1, N, 128] clean tokens (or noise-shaped, when sampling)
    coords: torch.Tensor              # [1, dims, N + Nr, 2]
    generated: bool
    reference: torch.Tensor | None = None

    @property
    def count(self) -> int:
        return self.target.shape[1]


@dataclass
class Text:
    video: torch.Tensor  # [1, L, video width] connector output
    audio: torch.Tensor  # [1, L, audio width]
    mask: torch.Tensor   # [1, L]


def pack_video(latents: torch.Tensor) -> torch.Tensor:
    """[1, 128, F', H', W'] -> [1, F'*H'*W', 128]."""
    return LTX2Pipeline._pack_latents(latents)


def unpack_video(tokens: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    return LTX2Pipeline._unpack_latents(tokens, *shape)


def pack_audio(latents: torch.Tensor) -> torch.Tensor:
    """[1, 8, T', 16] -> [1, T', 128]."""
    return LTX2Pipeline._pack_audio_latents(latents)


def unpack_audio(tokens: torch.Tensor, mel_bins: int = 16) -> torch.Tensor:
    return LTX2Pipeline._unpack_audio_latents(tokens, tokens.shape[1], mel_bins)


def video_coords(transformer, shape: tuple[int, int, int], fps: float, spatial_factor: int = 1,
                 temporal_factor: int = 1) -> torch.Tensor:
    """RoPE positions ([start, end) in seconds and pixels) of a latent grid (F', H', W'). A reference
    downscaled by `spatial_factor` and subsampled by `temporal_factor` (it keeps frames 0, t, 2t, ...)
    is placed on the positions of the target frames it came from."""
    coords = transformer.rope.prepare_video_coords(1, *shape, transformer.proj_in.weight.device, fps=fps)
    frame = 1.0 / fps
    coords[:, 0, :, 0] *= temporal_factor  # first frame covered: j -> j * t
    coords[:, 0, :, 1] = (coords[:, 0, :, 1] - frame) * temporal_factor + frame  # last: j -> j * t
    coords[:, 1:] *= spatial_factor
    return coords


def audio_coords(transformer, count: int) -> torch.Tensor:
    return transformer.audio_rope.prepare_audio_coords(1, count, transformer.proj_in.weight.device)


def shift_for_tokens(count: int) -> float:
    """The resolution-dependent shift: 0.95 at 1024 tokens, 2.05 at 4096 (linear, as the pipelines)."""
    return 0.95 + (count - 1024) * (2.05 - 0.95) / (4096 - 1024)


def sample_sigma(count: int, generator: torch.Generator) -> float:
    """A shifted logit-normal sigma for a modality with `count` tokens."""
    return float(torch.sigmoid(torch.randn(1, generator=generator) + shift_for_tokens(count)))


@torch.no_grad()
def encode_text(connectors, prompt: Prompt) -> Text:
    embeds, mask = prompt.expand(connectors.device, connectors.dtype)
    video, audio, mask = connectors(embeds, mask, padding_side="left")
    return Text(video, audio, mask)


def _timesteps(stream: Stream, sigma: float, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(timestep per token or per clip, sigma per clip), both scaled by 1000."""
    level = sigma if stream.generated else 0.0
    clip = torch.full((1,), level * TIMESTEP_SCALE, device=device)
    if stream.reference is None:
        return clip, clip
    per_token = torch.zeros(1, stream.count + stream.reference.shape[1], device=device)
    per_token[:, :stream.count] = level * TIMESTEP_SCALE
    return per_token, clip


def _tokens(stream: Stream, state: torch.Tensor) -> torch.Tensor:
    tokens = state if stream.generated else stream.target
    return tokens if stream.reference is None else torch.cat([tokens, stream.reference], dim=1)


def predict(transformer, text: Text, video: Stream, audio: Stream, video_state: torch.Tensor,
            audio_state: torch.Tensor, video_sigma: float, audio_sigma: float,
            stg_blocks: list[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The transformer's velocity (noise - clean) for the target tokens of both streams, given the
    current noisy states of the generated streams (ignored for frozen ones)."""
    device = video.target.device
    video_t, video_s = _timesteps(video, video_sigma, device)
    audio_t, audio_s = _timesteps(audio, audio_sigma, device)
    perturbation = torch.zeros(1, device=device) if stg_blocks else None
    video_out, audio_out = transformer(
        hidden_states=_tokens(video, video_state), audio_hidden_states=_tokens(audio, audio_state),
        encoder_hidden_states=text.video, audio_encoder_hidden_states=text.audio,
        timestep=video_t, audio_timestep=audio_t, sigma=video_s, audio_sigma=audio_s,
        encoder_attention_mask=text.mask, audio_encoder_attention_mask=text.mask,
        video_coords=video.coords, audio_coords=audio.coords, use_cross_timestep=True,
        spatio_temporal_guidance_blocks=stg_blocks, perturbation_mask=perturbation, return_dict=False,
    )
    return video_out[:, :video.count], audio_out[:, :audio.count]
