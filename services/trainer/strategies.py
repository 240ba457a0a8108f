"""The training modes, one class each (as Lightricks' ltx-trainer TrainingStrategy subclasses): which
modules get the LoRA, how a cached sample becomes the two token streams (and, by `Stream.generated`,
which modalities are noised, generated and scored), what the sampler starts from, which cache keys
a file must carry, how previews are guided and written, and which output field they fill.

- V2A: the video is frozen conditioning (timestep 0, sigma 0); only audio is noised and scored.
- AV2AV: reference video and audio tokens are appended at timestep 0 (the video reference placed as
  Lightricks' IC-LoRA places it, see tokens.video_coords); target video and audio are noised and scored.

A new mode is one more subclass here and one more entry in STRATEGIES."""

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch

from avlora.model.cache import AV2AV_KEYS, V2A_KEYS, ModeKeys
from services.trainer.data import Sample
from services.trainer.media import write_reel, write_wav
from services.trainer.tokens import Stream, audio_coords, pack_audio, pack_video, video_coords

ATTENTION_PROJECTIONS = ["to_q", "to_k", "to_v", "to_out.0"]

# Preview guidance (Lightricks' validation presets and diffusers' LTX2Pipeline defaults): CFG video 3 /
# audio 7, STG at the job's stg_scale, modality-isolation guidance 3, guidance rescale 0.7.
VIDEO_CFG, AUDIO_CFG, MODALITY_GUIDANCE, GUIDANCE_RESCALE = 3.0, 7.0, 3.0, 0.7


@dataclass(frozen=True)
class Guidance:
    """One modality's guidance scales (the neutral default leaves a frozen modality unguided)."""
    cfg: float = 1.0
    stg: float = 0.0
    modality: float = 1.0
    rescale: float = 0.0


@dataclass(frozen=True)
class Strategy:
    """What every mode provides; the subclasses below fill it in."""
    name: ClassVar[str]
    target_modules: ClassVar[tuple[str, ...]]
    cache_keys: ClassVar[ModeKeys]
    training_type: ClassVar[str]
    preview_suffix: ClassVar[str]
    output_field: ClassVar[str]           # the jobs_pb2.Outputs field the final preview fills
    decodes_video: ClassVar[bool] = False  # whether previews decode generated video
    reference_downscale_factor: int = 1
    reference_temporal_scale_factor: int = 1

    def streams(self, transformer, sample: Sample, fps: float) -> tuple[Stream, Stream]:
        """The (video, audio) streams of a sample. Sampling passes a `placeholder`."""
        raise NotImplementedError

    def placeholder(self, conditioning: Sample, video_shape: tuple[int, int, int], audio_count: int) -> Sample:
        """The sample the sampler starts from: conditioning kept, generated targets as zeros of the
        right shape (their values are never read: generated streams start from noise)."""
        raise NotImplementedError

    def target_shape(self, conditioning: Sample) -> tuple[int, int, int]:
        """The latent grid (F', H', W') of the video a preview shows."""
        raise NotImplementedError

    def guidance(self, stg_scale: float) -> tuple[Guidance, Guidance]:
        """(video, audio) preview guidance."""
        raise NotImplementedError

    def write_preview(self, path: Path, clips: list, fps: float, rate: int) -> Path:
        raise NotImplementedError

    def lora_metadata(self) -> dict[str, str]:
        """Safetensors metadata Lightricks' pipelines read (iclora_utils): reference factors other than 1."""
        return {}


def _zeros_audio(like: torch.Tensor, count: int) -> torch.Tensor:
    return torch.zeros(1, 8, count, 16, device=like.device)


@dataclass(frozen=True)
class V2A(Strategy):
    name = "v2a"
    # Lightricks' v2a preset: audio self/text attention, video->audio cross-attention, audio FFN.
    target_modules = (
        *(f"{attn}.{proj}" for attn in ("audio_attn1", "audio_attn2", "video_to_audio_attn")
          for proj in ATTENTION_PROJECTIONS),
        "audio_ff.net.0.proj", "audio_ff.net.2",
    )
    cache_keys = V2A_KEYS
    training_type = "video-to-audio"
    preview_suffix = ".wav"
    output_field = "audio"

    def streams(self, transformer, sample, fps):
        video, audio = pack_video(sample.video), pack_audio(sample.audio)
        return (Stream(video, video_coords(transformer, tuple(sample.video.shape[2:]), fps), generated=False),
                Stream(audio, audio_coords(transformer, audio.shape[1]), generated=True))

    def placeholder(self, conditioning, video_shape, audio_count):
        return Sample(conditioning.name, conditioning.prompt, conditioning.video,
                      _zeros_audio(conditioning.video, audio_count))

    def target_shape(self, conditioning):
        return tuple(conditioning.video.shape[2:])

    def guidance(self, stg_scale):
        # The video is conditioning: no guidance; STG perturbs the audio self-attention only.
        return Guidance(), Guidance(AUDIO_CFG, stg_scale, MODALITY_GUIDANCE, GUIDANCE_RESCALE)

    def write_preview(self, path, clips, fps, rate):
        return write_wav(path, [sound for _, sound in clips], rate)


@dataclass(frozen=True)
class AV2AV(Strategy):
    name = "av2av"
    # Every attention projection of all six attention kinds (Lightricks' av2av IC-LoRA preset).
    target_modules = tuple(ATTENTION_PROJECTIONS)
    cache_keys = AV2AV_KEYS
    training_type = "audio+video reference transformation"
    preview_suffix = ".mp4"
    output_field = "video"
    decodes_video = True

    def streams(self, transformer, sample, fps):
        video, audio = pack_video(sample.video), pack_audio(sample.audio)
        video_pos = video_coords(transformer, tuple(sample.video.shape[2:]), fps)
        ref_pos = video_coords(transformer, tuple(sample.ref_video.shape[2:]), fps,
                               self.reference_downscale_factor, self.reference_temporal_scale_factor)
        ref_audio = pack_audio(sample.ref_audio)
        audio_pos = audio_coords(transformer, audio.shape[1])
        return (
            Stream(video, torch.cat([video_pos, ref_pos], dim=2), generated=True,
                   reference=pack_video(sample.ref_video)),
            Stream(audio, torch.cat([audio_pos, audio_coords(transformer, ref_audio.shape[1])], dim=2),
                   generated=True, reference=ref_audio),
        )

    def placeholder(self, conditioning, video_shape, audio_count):
        video = torch.zeros(1, 128, *video_shape, device=conditioning.ref_video.device)
        return Sample(conditioning.name, conditioning.prompt, video, _zeros_audio(video, audio_count),
                      conditioning.ref_video, conditioning.ref_audio)

    def target_shape(self, conditioning):
        """The reference's grid scaled back up: F' = (F'_ref - 1) * S + 1, sides times D."""
        frames, height, width = conditioning.ref_video.shape[2:]
        spatial = self.reference_downscale_factor
        return ((frames - 1) * self.reference_temporal_scale_factor + 1, height * spatial, width * spatial)

    def guidance(self, stg_scale):
        return (Guidance(VIDEO_CFG, stg_scale, MODALITY_GUIDANCE, GUIDANCE_RESCALE),
                Guidance(AUDIO_CFG, stg_scale, MODALITY_GUIDANCE, GUIDANCE_RESCALE))

    def write_preview(self, path, clips, fps, rate):
        return write_reel(path, clips, fps, rate)

    def lora_metadata(self):
        metadata = {}
        if self.reference_downscale_factor != 1:
            spatial = str(self.reference_downscale_factor)
            metadata |= {"reference_spatial_scale_factor": spatial, "reference_downscale_factor": spatial}
        if self.reference_temporal_scale_factor != 1:
            metadata["reference_temporal_scale_factor"] = str(self.reference_temporal_scale_factor)
        return metadata


STRATEGIES: dict[str, type[Strategy]] = {V2A.name: V2A, AV2AV.name: AV2AV}


def strategy_for(params) -> Strategy:
    """The job's strategy, with the reference factors its params carry (av2av only)."""
    return STRATEGIES[params.mode](
        reference_downscale_factor=getattr(params, "reference_downscale_factor", 1),
        reference_temporal_scale_factor=getattr(params, "reference_temporal_scale_factor", 1))
