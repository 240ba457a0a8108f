"""The cache format between preprocessing and the trainer: one safetensors file per training item,
validation item and the negative prompt, with these tensor keys (written by
services/preprocess/encoding.py, read by services/trainer/data.py).

- VIDEO_LATENTS     [128, F', H', W'] normalised video latents (avlora.model.encode.encode_video)
- AUDIO_LATENTS     [8, T', 16] normalised audio latents, T' = audio_latent_count(frames, fps)
- REF_VIDEO_LATENTS av2av reference video latents: the reference frames 0, 1, 1+S, 1+2S, ... at
                    1/D of the target's size (S, D: the reference temporal and spatial factors)
- REF_AUDIO_LATENTS av2av reference audio latents, as AUDIO_LATENTS
- PROMPT_EMBEDS     [n_valid, D] the text encoder's stacked hidden states of the valid tokens only
- PROMPT_MASK       [L] int64 attention mask of the padded prompt (L: the model's text length)

Which latents a file must carry depends on the mode and on the kind of file (`ModeKeys`); every
file (the negative prompt's included) carries the two prompt keys."""

from dataclasses import dataclass

VIDEO_LATENTS = "video_latents"
AUDIO_LATENTS = "audio_latents"
REF_VIDEO_LATENTS = "ref_video_latents"
REF_AUDIO_LATENTS = "ref_audio_latents"
PROMPT_EMBEDS = "prompt_embeds"
PROMPT_MASK = "prompt_mask"
PROMPT_KEYS = (PROMPT_EMBEDS, PROMPT_MASK)


@dataclass(frozen=True)
class ModeKeys:
    """The latent keys a mode's cached files must carry (besides PROMPT_KEYS)."""
    training: tuple[str, ...]
    validation: tuple[str, ...]


# v2a: the video is conditioning, the audio the target; a validation entry is a video to dub.
V2A_KEYS = ModeKeys(training=(VIDEO_LATENTS, AUDIO_LATENTS), validation=(VIDEO_LATENTS,))
# av2av: target and reference audio+video; a validation entry is a reference to transform.
AV2AV_KEYS = ModeKeys(training=(VIDEO_LATENTS, AUDIO_LATENTS, REF_VIDEO_LATENTS, REF_AUDIO_LATENTS),
                      validation=(REF_VIDEO_LATENTS, REF_AUDIO_LATENTS))
