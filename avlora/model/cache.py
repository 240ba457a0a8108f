"""The cache format between preprocessing and the trainer: one safetensors file per training item,
validation item and the negative prompt, with these tensor keys, written by `to_bytes` (the one
writer: preprocessing, the tests' and benches' sets) and read by `from_bytes`, which refuses a file
of another CACHE_VERSION (its safetensors metadata) with a message naming it: an old cache is never
misread (preprocessing's file names carry the version, so a redelivered job rebuilds it).

- VIDEO_LATENTS     [128, F', H', W'] normalised video latents (avlora.model.encode.encode_video)
- AUDIO_LATENTS     [8, T', 16] normalised audio latents, T' = audio_latent_count(frames, fps)
- REF_VIDEO_LATENTS a pair's reference video latents: the reference frames 0, 1, 1+S, 1+2S, ... at
                    1/D of the target's size (S, D: the reference temporal and spatial factors)
- REF_AUDIO_LATENTS a pair's reference audio latents, as AUDIO_LATENTS
- PROMPT_VIDEO      [n_valid, video width] the caption's features for the video connector: the text
                    encoder's stacked hidden states through the connectors' feature extractor
                    (avlora.model.encode.TextProjection), valid tokens only, as Lightricks'
                    process_captions caches them
- PROMPT_AUDIO      [n_valid, audio width] the same for the audio connector
- PROMPT_MASK       [L] int64 attention mask of the padded prompt (L: the model's text length)

Versions: 1 (no version field) cached all stacked hidden states (49 x 3840 per token on the real
model, 376 KB in bf16); 2 caches the projected features (4096 + 2048 per token, 12 KB).

Which latents a file must carry depends on the mode and on the kind of file (avlora.modes.ModeKeys,
from the mode's entry: `<media key>_latents`); every file (the negative prompt's included) carries
the prompt keys."""

import json

import torch
from safetensors.torch import load, save

CACHE_VERSION = 2
VERSION_FIELD = "avlora_cache_version"

VIDEO_LATENTS = "video_latents"
AUDIO_LATENTS = "audio_latents"
REF_VIDEO_LATENTS = "ref_video_latents"
REF_AUDIO_LATENTS = "ref_audio_latents"
PROMPT_VIDEO = "prompt_video_features"
PROMPT_AUDIO = "prompt_audio_features"
PROMPT_MASK = "prompt_mask"
PROMPT_KEYS = (PROMPT_VIDEO, PROMPT_AUDIO, PROMPT_MASK)


def to_bytes(tensors: dict[str, torch.Tensor]) -> bytes:
    """One cached file (safetensors, this CACHE_VERSION in its metadata)."""
    return save({key: value.detach().contiguous().cpu() for key, value in tensors.items()},
                metadata={VERSION_FIELD: str(CACHE_VERSION)})


def from_bytes(data: bytes, name: str) -> dict[str, torch.Tensor]:
    """The tensors of one cached file (`name` for errors); a file of another cache version is refused."""
    version = _metadata(data, name).get(VERSION_FIELD, "1")
    if version != str(CACHE_VERSION):
        raise ValueError(f"cached file {name} has cache format {version}, this trainer reads format "
                                f"{CACHE_VERSION}: preprocess the dataset again (a new job does)")
    return load(data)


def _metadata(data: bytes, name: str) -> dict[str, str]:
    """The safetensors header's __metadata__ (an 8-byte little-endian length, then that much JSON)."""
    try:
        length = int.from_bytes(data[:8], "little")
        return json.loads(data[8:8 + length]).get("__metadata__") or {}
    except (ValueError, AttributeError) as error:
        raise ValueError(f"cached file {name} is not a safetensors file: {error}") from error
