"""The training strategy, one for every mode, configured by the mode's entry in avlora.modes (as
Lightricks' ltx-trainer FlexibleStrategy is configured per modality): which modules get the LoRA,
how a cached sample becomes the two token streams (a "generated" modality is noised, generated and
scored; a "frozen" one is conditioning at timestep 0; a pair's reference tokens are appended to
both at timestep 0, the video reference placed as Lightricks' IC-LoRA places it, see
tokens.video_coords), what the sampler starts from, how previews are guided and written, and which
output field they fill."""

from dataclasses import dataclass
from pathlib import Path

import torch

from avlora.modes import MODES, Mode, ModeKeys
from services.trainer.data import Sample
from services.trainer.media import write_reel, write_wav
from services.trainer.tokens import Stream, audio_coords, pack_audio, pack_video, video_coords

# Preview guidance of a generated modality (Lightricks' validation presets and diffusers'
# LTX2Pipeline defaults): CFG video 3 / audio 7, STG at the job's stg_scale, modality-isolation
# guidance 3, guidance rescale 0.7. A frozen modality is unguided.
VIDEO_CFG, AUDIO_CFG, MODALITY_GUIDANCE, GUIDANCE_RESCALE = 3.0, 7.0, 3.0, 0.7
CFG = {"video": VIDEO_CFG, "audio": AUDIO_CFG}
LATENT_CHANNELS = {"video": 128, "audio": 8}


@dataclass(frozen=True)
class Guidance:
    """One modality's guidance scales (the neutral default leaves a frozen modality unguided)."""
    cfg: float = 1.0
    stg: float = 0.0
    modality: float = 1.0
    rescale: float = 0.0


@dataclass(frozen=True)
class Strategy:
    mode: Mode
    reference_downscale_factor: int = 1
    reference_temporal_scale_factor: int = 1

    @property
    def name(self) -> str:
        return self.mode.name

    @property
    def target_modules(self) -> tuple[str, ...]:
        return self.mode.target_modules

    @property
    def cache_keys(self) -> ModeKeys:
        return self.mode.cache_keys

    @property
    def training_type(self) -> str:
        return self.mode.training_type

    @property
    def output_field(self) -> str:
        """The jobs_pb2.Outputs field the final preview fills."""
        return self.mode.preview[0]

    @property
    def preview_suffix(self) -> str:
        return self.mode.preview[1]

    @property
    def decodes_video(self) -> bool:
        """Whether previews decode generated video."""
        return self.mode.generated("video")

    def streams(self, transformer, sample: Sample, fps: float) -> tuple[Stream, Stream]:
        """The (video, audio) streams of a sample. Sampling passes a `placeholder`."""
        video, audio = pack_video(sample.video), pack_audio(sample.audio)
        video_pos = video_coords(transformer, tuple(sample.video.shape[2:]), fps)
        audio_pos = audio_coords(transformer, audio.shape[1])
        if not self.mode.pairs:
            return (Stream(video, video_pos, self.mode.generated("video")),
                    Stream(audio, audio_pos, self.mode.generated("audio")))
        ref_pos = video_coords(transformer, tuple(sample.ref_video.shape[2:]), fps,
                               self.reference_downscale_factor, self.reference_temporal_scale_factor)
        ref_audio = pack_audio(sample.ref_audio)
        return (
            Stream(video, torch.cat([video_pos, ref_pos], dim=2), self.mode.generated("video"),
                   reference=pack_video(sample.ref_video)),
            Stream(audio, torch.cat([audio_pos, audio_coords(transformer, ref_audio.shape[1])], dim=2),
                   self.mode.generated("audio"), reference=ref_audio),
        )

    def placeholder(self, conditioning: Sample, video_shape: tuple[int, int, int], audio_count: int) -> Sample:
        """The sample the sampler starts from: conditioning kept, generated targets as zeros of the
        right shape (their values are never read: generated streams start from noise)."""
        device = next(t for t in (conditioning.video, conditioning.audio, conditioning.ref_video) if t is not None).device
        shapes = {"video": (1, LATENT_CHANNELS["video"], *video_shape),
                  "audio": (1, LATENT_CHANNELS["audio"], audio_count, 16)}
        kept = {"video": conditioning.video, "audio": conditioning.audio}
        media = {m: torch.zeros(shapes[m], device=device) if self.mode.generated(m) else kept[m] for m in shapes}
        return Sample(conditioning.name, conditioning.prompt, media["video"], media["audio"],
                      conditioning.ref_video, conditioning.ref_audio)

    def target_shape(self, conditioning: Sample, grid: tuple[int, int, int] | None = None) -> tuple[int, int, int]:
        """The latent grid (F', H', W') of the video a preview shows: a reference's grid scaled back
        up (F' = (F'_ref - 1) * S + 1, sides times D), the conditioning's video, else `grid` (the
        preview settings' grid, for a video generated from sound alone)."""
        if conditioning.ref_video is not None:
            frames, height, width = conditioning.ref_video.shape[2:]
            spatial = self.reference_downscale_factor
            return ((frames - 1) * self.reference_temporal_scale_factor + 1, height * spatial, width * spatial)
        if conditioning.video is not None:
            return tuple(conditioning.video.shape[2:])
        if grid is None:
            raise ValueError(f"preview of {conditioning.name}: no video and no preview size to generate one at")
        return tuple(grid)

    def guidance(self, stg_scale: float) -> tuple[Guidance, Guidance]:
        """(video, audio) preview guidance: a generated modality guided, a frozen one not (STG then
        perturbs the generated modalities' self-attention only)."""
        return tuple(Guidance(CFG[m], stg_scale, MODALITY_GUIDANCE, GUIDANCE_RESCALE) if self.mode.generated(m)
                     else Guidance() for m in ("video", "audio"))

    def write_preview(self, path: Path, clips: list, fps: float, rate: int) -> Path:
        """The generated video with its sound (the generated one, or the conditioning's), else the
        generated sound of every clip."""
        if self.decodes_video:
            return write_reel(path, clips, fps, rate)
        return write_wav(path, [sound for _, sound in clips], rate)

    def lora_metadata(self) -> dict[str, str]:
        """Safetensors metadata Lightricks' pipelines read (iclora_utils): reference factors other than 1."""
        metadata = {}
        if self.reference_downscale_factor != 1:
            spatial = str(self.reference_downscale_factor)
            metadata |= {"reference_spatial_scale_factor": spatial, "reference_downscale_factor": spatial}
        if self.reference_temporal_scale_factor != 1:
            metadata["reference_temporal_scale_factor"] = str(self.reference_temporal_scale_factor)
        return metadata


def strategy_for(params) -> Strategy:
    """The job's strategy, with the reference factors its params carry."""
    return Strategy(MODES[params.mode], *params.reference_factors)
