"""Custom Euler sampler over the transformer (the stock pipelines cannot freeze a modality or take
audio references): each modality is generated or frozen as the strategy says (v2a: audio for a
frozen video; a2v: video for a frozen soundtrack; av2av: both, from appended references).

Guidance as Lightricks' validation (ltx-core MultiModalGuider) and diffusers' LTX2Pipeline, per
modality on the denoised (x0) predictions: x0 = c + (cfg - 1)(c - u_text) + stg (c - u_perturbed)
+ (modality - 1)(c - u_isolated), then rescaled towards c's spread (guidance rescale), measured over all
of the modality's tokens as ltx-core does (reference tokens included: clean in every pass, guidance
leaves them as they are). The sigmas are shifted for a fixed PREVIEW_SHIFT_TOKENS tokens, as
Lightricks' pipelines and validation (ltx-core LTX2Scheduler without a latent), not for the
preview's own token count as diffusers' LTX2Pipeline does. The passes:
positive prompt; negative prompt for the modalities that use CFG (the others keep the positive one);
self-attention perturbed in one block for the modalities that use STG (v2a: the audio only);
audio<->video cross-attention skipped (modality isolation)."""

import copy
from dataclasses import dataclass

import numpy as np
import torch

from services.trainer.data import Sample
from services.trainer.strategies import Guidance, Strategy
from services.trainer.tokens import (
    Text, perturbed_self_attention, predict, shift_for_tokens, unpack_audio, unpack_video,
)

STG_BLOCK_REAL = 28    # the block LTX-2.3 perturbs for STG
PREVIEW_SHIFT_TOKENS = 4096  # ltx-core LTX2Scheduler's default_number_of_tokens: mu = 2.05


def stg_block(transformer) -> int:
    layers = transformer.config.num_layers
    return STG_BLOCK_REAL if layers > STG_BLOCK_REAL else layers // 2


def euler_sigmas(scheduler, steps: int) -> list[float]:
    """The sigmas of `steps` Euler steps, ending at 0: linear, shifted for PREVIEW_SHIFT_TOKENS tokens
    and stretched to the scheduler's terminal (diffusers' scheduler computes ltx-core's LTX2Scheduler
    formula when given the same shift)."""
    scheduler = copy.deepcopy(scheduler)
    scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / steps, steps), mu=shift_for_tokens(PREVIEW_SHIFT_TOKENS))
    return [float(s) for s in scheduler.sigmas]


def guided(positive: torch.Tensor, negative: torch.Tensor | None, perturbed: torch.Tensor | None,
           isolated: torch.Tensor | None, guidance: Guidance, reference: torch.Tensor | None = None) -> torch.Tensor:
    """One modality's guided x0 of its target tokens from its passes' x0 predictions (a pass the
    guidance does not use may be None). `reference`: the modality's clean reference tokens, which
    count in the rescale's spread as in ltx-core (where they sit in the same latent)."""
    result = positive
    if guidance.cfg != 1:
        result = result + (guidance.cfg - 1) * (positive - negative)
    if guidance.stg != 0:
        result = result + guidance.stg * (positive - perturbed)
    if guidance.modality != 1:
        result = result + (guidance.modality - 1) * (positive - isolated)
    if guidance.rescale != 0:
        whole = (lambda x: x) if reference is None else (lambda x: torch.cat([x, reference], dim=1))  # noqa: E731
        factor = whole(positive).std() / whole(result).std()
        result = result * (guidance.rescale * factor + (1 - guidance.rescale))
    return result


@dataclass
class Generation:
    video: torch.Tensor  # [1, 128, F', H', W'] normalised latents (frozen: the input video)
    audio: torch.Tensor  # [1, 8, T', 16] (frozen: the input audio)


@torch.no_grad()
def generate(model, strategy: Strategy, conditioning: Sample, text: Text, negative: Text, fps: float,
             video_shape: tuple[int, int, int], audio_count: int, steps: int, stg_scale: float,
             generator: torch.Generator, autocast, should_stop=lambda: False,
             on_step=lambda done, total: None) -> Generation:
    transformer = model.transformer
    transformer.eval()
    video, audio = strategy.streams(transformer, strategy.placeholder(conditioning, video_shape, audio_count), fps)
    video_state = torch.randn(video.target.shape, generator=generator).to(video.target.device)
    audio_state = torch.randn(audio.target.shape, generator=generator).to(audio.target.device)
    if not video.generated:
        video_state = video.target
    if not audio.generated:
        audio_state = audio.target
    video_guidance, audio_guidance = strategy.guidance(stg_scale)
    uses = lambda test: any(test(g) for g in (video_guidance, audio_guidance))  # noqa: E731
    # The CFG pass gives the negative prompt only to the modalities that use CFG.
    cfg_text = Text(negative.video if video_guidance.cfg != 1 else text.video,
                    negative.audio if audio_guidance.cfg != 1 else text.audio, text.mask)
    blocks = [stg_block(transformer)]
    sigmas = euler_sigmas(model.scheduler, steps)
    for step, (sigma, next_sigma) in enumerate(zip(sigmas[:-1], sigmas[1:])):
        if should_stop():
            break

        def denoised(prompt: Text, isolate: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
            with autocast():
                v, a = predict(transformer, prompt, video, audio, video_state, audio_state, sigma, sigma, isolate)
            return video_state - sigma * v.float(), audio_state - sigma * a.float()

        positive = denoised(text)
        negative_x0 = denoised(cfg_text) if uses(lambda g: g.cfg != 1) else (None, None)
        perturbed = (None, None)
        if uses(lambda g: g.stg != 0):
            with perturbed_self_attention(transformer, blocks, video_guidance.stg != 0, audio_guidance.stg != 0):
                perturbed = denoised(text)
        isolated = denoised(text, isolate=True) if uses(lambda g: g.modality != 1) else (None, None)
        if video.generated:
            x0 = guided(positive[0], negative_x0[0], perturbed[0], isolated[0], video_guidance, video.reference)
            video_state = _euler(video_state, x0, sigma, next_sigma)
        if audio.generated:
            x0 = guided(positive[1], negative_x0[1], perturbed[1], isolated[1], audio_guidance, audio.reference)
            audio_state = _euler(audio_state, x0, sigma, next_sigma)
        on_step(step + 1, len(sigmas) - 1)
    shape = tuple(video_shape) if video.generated else tuple(conditioning.video.shape[2:])
    return Generation(unpack_video(video_state, shape), unpack_audio(audio_state))


def _euler(state: torch.Tensor, x0: torch.Tensor, sigma: float, next_sigma: float) -> torch.Tensor:
    """One Euler step of the flow from sigma to next_sigma, with velocity (state - x0) / sigma."""
    return state + (next_sigma - sigma) * (state - x0) / sigma

