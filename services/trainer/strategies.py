"""The two training modes as strategies over one loop: which modules get the LoRA, how a cached
sample becomes the two token streams, and (by `Stream.generated`) which modalities are noised,
generated and scored.

- v2a: the video is frozen conditioning (timestep 0, sigma 0); only audio is noised and scored.
- av2av: reference video and audio tokens are appended at timestep 0 on the target's positions
  (the video reference scaled by the reference factors); target video and audio are noised and scored.
"""

from dataclasses import dataclass

import torch

from services.trainer.data import Sample
from services.trainer.tokens import Stream, audio_coords, pack_audio, pack_video, video_coords

ATTENTION_PROJECTIONS = ["to_q", "to_k", "to_v", "to_out.0"]
# Lightricks' v2a preset: audio self/text attention, audio FFN, video->audio cross-attention.
V2A_TARGET_MODULES = [
    *(f"{attn}.{proj}" for attn in ("audio_attn1", "audio_attn2", "video_to_audio_attn")
      for proj in ATTENTION_PROJECTIONS),
    "audio_ff.net.0.proj", "audio_ff.net.2",
]
# av2av: every attention projection of all six attention kinds.
AV2AV_TARGET_MODULES = ATTENTION_PROJECTIONS


@dataclass(frozen=True)
class Strategy:
    mode: str
    target_modules: list[str]
    reference_downscale_factor: int = 1
    reference_temporal_scale_factor: int = 1

    def streams(self, transformer, sample: Sample, fps: float) -> tuple[Stream, Stream]:
        """The (video, audio) streams of a sample. Sampling passes a sample whose generated
        targets are placeholders of the right shape."""
        video = pack_video(sample.video)
        video_pos = video_coords(transformer, tuple(sample.video.shape[2:]), fps)
        audio = pack_audio(sample.audio)
        audio_pos = audio_coords(transformer, audio.shape[1])
        if self.mode == "v2a":
            return (Stream(video, video_pos, generated=False), Stream(audio, audio_pos, generated=True))
        ref_pos = video_coords(transformer, tuple(sample.ref_video.shape[2:]), fps,
                               self.reference_downscale_factor, self.reference_temporal_scale_factor)
        ref_audio = pack_audio(sample.ref_audio)
        return (
            Stream(video, torch.cat([video_pos, ref_pos], dim=2), generated=True,
                   reference=pack_video(sample.ref_video)),
            Stream(audio, torch.cat([audio_pos, audio_coords(transformer, ref_audio.shape[1])], dim=2),
                   generated=True, reference=ref_audio),
        )


def strategy_for(params) -> Strategy:
    if params.mode == "v2a":
        return Strategy("v2a", V2A_TARGET_MODULES)
    return Strategy("av2av", AV2AV_TARGET_MODULES, params.reference_downscale_factor,
                    params.reference_temporal_scale_factor)
