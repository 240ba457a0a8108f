"""How a clip becomes the transformer's input: packed tokens, RoPE coordinates, per-token timesteps,
and the one forward call that training and sampling share."""

from contextlib import contextmanager
from dataclasses import dataclass

import torch
from diffusers import LTX2Pipeline

from avlora.model.encode import connect
from avlora.model.modulation import modulate_as_ltx_core
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

    @property
    def tokens(self) -> int:
        """Every token of this modality the transformer sees: the target's and the reference's."""
        return self.count + (0 if self.reference is None else self.reference.shape[1])


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
    """RoPE positions ([start, end) in seconds and pixels) of a latent grid (F', H', W').

    A reference at 1/`spatial_factor` of the size that kept frames 0, 1, 1+S, 1+2S, ... (S =
    `temporal_factor`) is placed as Lightricks' IC-LoRA places it (ltx-core VideoConditionByReferenceLatent,
    ltx-trainer FlexibleStrategy): its own grid at fps / S, moved back by (S - 1) target frames and
    clamped at 0, sides times the spatial factor. Reference latent frame k >= 1 then covers target
    frames [8S(k - 1) + 1, 8Sk + 1), the span of target latent frames S(k - 1) + 1 ... Sk."""
    coords = transformer.rope.prepare_video_coords(1, *shape, transformer.proj_in.weight.device,
                                                   fps=fps / temporal_factor)
    if temporal_factor != 1:
        coords[:, 0] = (coords[:, 0] - (temporal_factor - 1) / fps).clamp(min=0)
    coords[:, 1:] *= spatial_factor
    return coords


def audio_coords(transformer, count: int) -> torch.Tensor:
    return transformer.audio_rope.prepare_audio_coords(1, count, transformer.proj_in.weight.device)


def shift_for_tokens(count: int) -> float:
    """The resolution-dependent shift: 0.95 at 1024 tokens, 2.05 at 4096 (linear, as the pipelines)."""
    return 0.95 + (count - 1024) * (2.05 - 0.95) / (4096 - 1024)


# Lightricks' shifted logit-normal timestep sampler (ltx-trainer ShiftedLogitNormalTimestepSampler,
# with the defaults every preset uses): the logit-normal's 0.5th..99.9th percentiles are stretched
# onto [0, 1], draws below SIGMA_EPS are reflected above it, and 10 % of draws are uniform.
SIGMA_STD = 1.0
SIGMA_EPS = 1e-3
UNIFORM_FRACTION = 0.1
NORMAL_QUANTILE_LOW = -2.5758   # the standard normal's 0.5th percentile
NORMAL_QUANTILE_HIGH = 3.0902   # and its 99.9th


def sample_sigmas(count: int, draws: int, generator: torch.Generator) -> torch.Tensor:
    """`draws` sigmas in [SIGMA_EPS, 1] for a modality with `count` tokens (float32, CPU)."""
    mu = shift_for_tokens(count)
    logistic = torch.sigmoid(mu + SIGMA_STD * torch.randn(draws, generator=generator))
    low = torch.sigmoid(torch.tensor(mu + NORMAL_QUANTILE_LOW * SIGMA_STD))
    high = torch.sigmoid(torch.tensor(mu + NORMAL_QUANTILE_HIGH * SIGMA_STD))
    stretched = (logistic - low) / (high - low)
    reflected = torch.where(stretched >= SIGMA_EPS, stretched, 2 * SIGMA_EPS - stretched).clamp(0, 1)
    uniform = (1 - SIGMA_EPS) * torch.rand(draws, generator=generator) + SIGMA_EPS
    return torch.where(torch.rand(draws, generator=generator) > UNIFORM_FRACTION, reflected, uniform)


def sample_sigma(count: int, generator: torch.Generator) -> float:
    """One training sigma for a modality with `count` tokens (see sample_sigmas)."""
    return float(sample_sigmas(count, 1, generator))


@torch.no_grad()
def encode_text(connectors, prompt: Prompt) -> Text:
    video, audio, mask = connect(connectors, *prompt.expand(connectors.device, connectors.dtype))
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


@contextmanager
def perturbed_self_attention(transformer, blocks: list[int], video: bool, audio: bool):
    """STG perturbation of one modality or both: in `blocks`, the chosen self-attentions (video
    `attn1`, audio `audio_attn1`) output their value projection (each token attends only to itself),
    as ltx-core's SKIP_VIDEO_SELF_ATTN / SKIP_AUDIO_SELF_ATTN. diffusers' own STG always perturbs both."""
    def perturb(module, args, kwargs):
        return args, kwargs | {"perturbation_mask": None, "all_perturbed": True}

    handles = [attn.register_forward_pre_hook(perturb, with_kwargs=True)
               for index in blocks for chosen, attn in ((video, transformer.transformer_blocks[index].attn1),
                                                         (audio, transformer.transformer_blocks[index].audio_attn1))
               if chosen]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def predict(transformer, text: Text, video: Stream, audio: Stream, video_state: torch.Tensor,
            audio_state: torch.Tensor, video_sigma: float, audio_sigma: float,
            isolate_modalities: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The transformer's velocity (noise - clean) for the target tokens of both streams, given the
    current noisy states of the generated streams (ignored for frozen ones). `isolate_modalities`
    skips the audio<->video cross-attention (the modality-guidance pass). The cross-attention is
    modulated as ltx-core does it (avlora.model.modulation): scale/shift from each modality's own
    per-token timesteps, gate from the other modality's sigma."""
    modulate_as_ltx_core(transformer)
    device = video.target.device
    video_t, video_s = _timesteps(video, video_sigma, device)
    audio_t, audio_s = _timesteps(audio, audio_sigma, device)
    video_out, audio_out = transformer(
        hidden_states=_tokens(video, video_state), audio_hidden_states=_tokens(audio, audio_state),
        encoder_hidden_states=text.video, audio_encoder_hidden_states=text.audio,
        timestep=video_t, audio_timestep=audio_t, sigma=video_s, audio_sigma=audio_s,
        encoder_attention_mask=text.mask, audio_encoder_attention_mask=text.mask,
        video_coords=video.coords, audio_coords=audio.coords,
        isolate_modalities=isolate_modalities, return_dict=False,
    )
    return video_out[:, :video.count], audio_out[:, :audio.count]
