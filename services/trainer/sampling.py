"""Custom Euler samplers over the transformer (the stock pipelines cannot freeze a video or take
audio references): v2a generates audio for a frozen video; av2av generates video and audio from
appended references. Classifier-free guidance against the negative prompt, and spatio-temporal
guidance (perturbed self-attention in one block; stg_scale 0 turns it off)."""

import copy
from dataclasses import dataclass

import numpy as np
import torch

from services.trainer.data import Sample
from services.trainer.strategies import Strategy
from services.trainer.tokens import Text, predict, shift_for_tokens, unpack_audio, unpack_video

VIDEO_GUIDANCE = 3.0   # LTX-2.3's suggested CFG scales: video 3, audio 7
AUDIO_GUIDANCE = 7.0
STG_BLOCK_REAL = 28    # the block LTX-2.3 perturbs for STG


def stg_block(transformer) -> int:
    layers = transformer.config.num_layers
    return STG_BLOCK_REAL if layers > STG_BLOCK_REAL else layers // 2


def euler_sigmas(scheduler, steps: int, video_tokens: int) -> list[float]:
    """The scheduler's shifted sigmas for `steps` Euler steps, ending at 0 (as LTX2Pipeline)."""
    scheduler = copy.deepcopy(scheduler)
    scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / steps, steps), mu=shift_for_tokens(video_tokens))
    return [float(s) for s in scheduler.sigmas]


@dataclass
class Generation:
    video: torch.Tensor  # [1, 128, F', H', W'] normalised latents (v2a: the frozen input video)
    audio: torch.Tensor  # [1, 8, T', 16]


def placeholder(strategy: Strategy, conditioning: Sample, video_shape: tuple[int, int, int],
                audio_count: int) -> Sample:
    """The sample the sampler starts from: conditioning kept, generated targets as zeros of the
    right shape (their values are never read: generated streams start from noise)."""
    device = (conditioning.video if conditioning.video is not None else conditioning.ref_video).device
    audio = torch.zeros(1, 8, audio_count, 16, device=device)
    video = conditioning.video if strategy.mode == "v2a" else torch.zeros(1, 128, *video_shape, device=device)
    return Sample(conditioning.name, conditioning.prompt, video, audio, conditioning.ref_video,
                  conditioning.ref_audio)


@torch.no_grad()
def generate(model, strategy: Strategy, conditioning: Sample, text: Text, negative: Text, fps: float,
             video_shape: tuple[int, int, int], audio_count: int, steps: int, stg_scale: float,
             generator: torch.Generator, autocast, should_stop=lambda: False) -> Generation:
    transformer = model.transformer
    transformer.eval()
    video, audio = strategy.streams(transformer, placeholder(strategy, conditioning, video_shape, audio_count), fps)
    video_state = torch.randn(video.target.shape, generator=generator).to(video.target.device)
    audio_state = torch.randn(audio.target.shape, generator=generator).to(audio.target.device)
    if not video.generated:
        video_state = video.target
    sigmas = euler_sigmas(model.scheduler, steps, video.count)
    blocks = [stg_block(transformer)]
    for sigma, next_sigma in zip(sigmas[:-1], sigmas[1:]):
        if should_stop():
            break

        def velocity(prompt: Text, stg: list[int] | None = None):
            with autocast():
                v, a = predict(transformer, prompt, video, audio, video_state, audio_state, sigma, sigma, stg)
            return v.float(), a.float()

        video_v, audio_v = velocity(text)
        uncond_v, uncond_a = velocity(negative)
        guided_v = video_v + (VIDEO_GUIDANCE - 1) * (video_v - uncond_v)
        guided_a = audio_v + (AUDIO_GUIDANCE - 1) * (audio_v - uncond_a)
        if stg_scale > 0:
            perturbed_v, perturbed_a = velocity(text, blocks)
            guided_v = guided_v + stg_scale * (video_v - perturbed_v)
            guided_a = guided_a + stg_scale * (audio_v - perturbed_a)
        if video.generated:
            video_state = video_state + (next_sigma - sigma) * guided_v
        audio_state = audio_state + (next_sigma - sigma) * guided_a
    shape = tuple(video_shape) if video.generated else tuple(conditioning.video.shape[2:])
    return Generation(unpack_video(video_state, shape), unpack_audio(audio_state))
