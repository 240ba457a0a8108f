"""Every training mode as data, read by every layer (as Lightricks' flexible strategy is configured
per modality, not written per mode). A mode is its entry in MODES plus its parameters
(avlora.params, and their message in params.proto):

- `roles`: what the LoRA does with each modality of a clip, "generated" (noised, generated,
  scored) or "frozen" (conditioning at timestep 0);
- `pairs`: the dataset is `<name>_start` / `<name>_end` pairs whose `_start` clip (video and audio)
  is a reference appended to each modality, scaled by the job's reference factors
  (CommonParams.reference_factors); otherwise single clips;
- what conditions a preview follows from both (`conditioning`): the frozen modalities of the
  validation entry's media, or its reference video and audio; the cache keys follow from that;
- the preview shows what is generated: an MP4 when the video is, else a WAV (`preview`);
- the training videos an archive may hold, the LoRA's target modules, the price per billed step.

Ingest reads the suffixes and the validation media, preprocessing the layout and the conditioning
(`services/preprocess/modes.py`), the trainer the roles (`services/trainer/strategies.py`),
billing the price."""

from dataclasses import dataclass
from typing import Literal

from avlora.params import MODES as PARAMS
from avlora.params import A2VParams, AV2AVParams, CommonParams, V2AParams

Role = Literal["generated", "frozen"]
GENERATED: Role = "generated"
FROZEN: Role = "frozen"
MODALITIES = ("video", "audio")
REFERENCES = ("ref_video", "ref_audio")  # the media keys of a pair's `_start` clip

# Every attention projection of all six attention kinds (Lightricks' av2av and a2v presets).
ATTENTION_PROJECTIONS = ("to_q", "to_k", "to_v", "to_out.0")
# Lightricks' v2a preset: audio self/text attention, video->audio cross-attention, audio FFN.
AUDIO_SIDE = (*(f"{attn}.{proj}" for attn in ("audio_attn1", "audio_attn2", "video_to_audio_attn")
                for proj in ATTENTION_PROJECTIONS),
              "audio_ff.net.0.proj", "audio_ff.net.2")

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv")


@dataclass(frozen=True)
class ModeKeys:
    """The latent keys a mode's cached files must carry (besides avlora.model.cache.PROMPT_KEYS)."""
    training: tuple[str, ...]
    validation: tuple[str, ...]


@dataclass(frozen=True)
class Mode:
    params: type[CommonParams]
    roles: dict[str, Role]            # by modality ("video", "audio")
    pairs: bool                       # `_start`/`_end` pairs with the `_start` clip as reference
    video_suffixes: tuple[str, ...]   # the training videos an archive may hold (others are ignored)
    target_modules: tuple[str, ...]   # the LoRA's, as peft matches them
    training_type: str                # config.json's words
    unit_price: float                 # per billed unit (step)

    @property
    def name(self) -> str:
        return self.params.mode_name()

    def generated(self, modality: str) -> bool:
        return self.roles[modality] == GENERATED

    @property
    def conditioning(self) -> tuple[str, ...]:
        """The media a preview is made from (media keys: "video", "audio", "ref_video", "ref_audio")."""
        return (*(m for m in MODALITIES if not self.generated(m)), *(REFERENCES if self.pairs else ()))

    @property
    def cache_keys(self) -> ModeKeys:
        """The latents a cached training / validation file carries: `<media key>_latents`."""
        training = (*MODALITIES, *(REFERENCES if self.pairs else ()))
        return ModeKeys(tuple(f"{key}_latents" for key in training),
                        tuple(f"{key}_latents" for key in self.conditioning))

    @property
    def preview(self) -> tuple[str, str]:
        """(the jobs_pb2.Outputs field the preview fills, its file suffix): the generated video with
        its sound, else the generated sound."""
        return ("video", ".mp4") if self.generated("video") else ("audio", ".wav")


MODES: dict[str, Mode] = {mode.name: mode for mode in (
    # Video to audio (foley): the video conditions, the audio is learnt.
    Mode(V2AParams, {"video": FROZEN, "audio": GENERATED}, pairs=False, video_suffixes=VIDEO_SUFFIXES,
         target_modules=AUDIO_SIDE, training_type="video-to-audio", unit_price=0.0049),
    # Audio+video to audio+video: a reference clip conditions a generated target clip.
    Mode(AV2AVParams, {"video": GENERATED, "audio": GENERATED}, pairs=True,
         video_suffixes=(".mp4", ".mov", ".webm", ".mkv", ".avi"), target_modules=ATTENTION_PROJECTIONS,
         training_type="audio+video reference transformation", unit_price=0.0068),
    # Audio to video: the soundtrack conditions, the picture is learnt (Lightricks' a2v_lora.yaml).
    Mode(A2VParams, {"video": GENERATED, "audio": FROZEN}, pairs=False, video_suffixes=VIDEO_SUFFIXES,
         target_modules=ATTENTION_PROJECTIONS, training_type="audio-to-video", unit_price=0.006),
)}
assert MODES.keys() == PARAMS.keys(), "every params class has its entry in MODES"


def mode_of(params: CommonParams) -> Mode:
    return MODES[params.mode]
