"""Loads LTX-2.3 components from a local diffusers-format directory (the real model or the tiny
one, same code). Nothing is ever downloaded: every load is local_files_only."""

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKLLTX2Audio,
    AutoencoderKLLTX2Video,
    FlowMatchEulerDiscreteScheduler,
    LTX2VideoTransformer3DModel,
)
from diffusers.pipelines.ltx2 import LTX2TextConnectors, LTX2Vocoder, LTX2VocoderWithBWE
from transformers import AutoTokenizer, Gemma3ForConditionalGeneration

from avlora.model.encode import TextProjection, encode_prompts, prompt_to_cache, text_length


@dataclass
class Encoders:
    """What preprocessing needs: the two VAEs, the text encoder and the connectors' feature extractor."""
    vae: AutoencoderKLLTX2Video
    audio_vae: AutoencoderKLLTX2Audio
    text_encoder: Gemma3ForConditionalGeneration
    tokenizer: object
    text_length: int  # prompts are padded to this many tokens (avlora.model.encode.text_length)
    projection: TextProjection

    def caption(self, text: str) -> dict[str, torch.Tensor]:
        """The cache's prompt keys of one caption (avlora.model.cache)."""
        embeds, mask = encode_prompts(self.text_encoder, self.tokenizer, [text], self.text_length)
        video, audio = self.projection(embeds, mask)
        return prompt_to_cache(video[0], audio[0], mask[0])


@dataclass
class TrainingModel:
    """What the trainer needs: the transformer and connectors, the decoders and vocoder for previews."""
    transformer: LTX2VideoTransformer3DModel
    connectors: LTX2TextConnectors
    vae: AutoencoderKLLTX2Video
    audio_vae: AutoencoderKLLTX2Audio
    vocoder: LTX2Vocoder | LTX2VocoderWithBWE
    scheduler: FlowMatchEulerDiscreteScheduler


def _check_dir(model_dir: str | Path) -> Path:
    path = Path(model_dir)
    if not (path / "model_index.json").is_file():
        raise FileNotFoundError(f"no diffusers-format model at {path} (model_index.json missing)")
    return path


def _vocoder_class(path: Path):
    config = json.loads((path / "vocoder" / "config.json").read_text())
    return LTX2VocoderWithBWE if config["_class_name"] == "LTX2VocoderWithBWE" else LTX2Vocoder


def _load(cls, path: Path, name: str, device, dtype):
    model = cls.from_pretrained(path / name, local_files_only=True, torch_dtype=dtype)
    return model.to(device).eval().requires_grad_(False)


def load_encoders(model_dir: str | Path, device: str | torch.device = "cpu",
                  dtype: torch.dtype = torch.float32) -> Encoders:
    path = _check_dir(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(path / "tokenizer", local_files_only=True)
    tokenizer.padding_side = "left"
    connectors = json.loads((path / "connectors" / "config.json").read_text())
    registers = connectors.get("video_connector_num_learnable_registers", 128)
    return Encoders(
        vae=_load(AutoencoderKLLTX2Video, path, "vae", device, dtype),
        audio_vae=_load(AutoencoderKLLTX2Audio, path, "audio_vae", device, dtype),
        text_encoder=_load(Gemma3ForConditionalGeneration, path, "text_encoder", device, dtype),
        tokenizer=tokenizer,
        text_length=text_length(tokenizer, registers),
        projection=TextProjection(_load(LTX2TextConnectors, path, "connectors", device, dtype)),
    )


def load_for_training(model_dir: str | Path, device: str | torch.device = "cpu",
                      dtype: torch.dtype = torch.float32,
                      decoders_device: str | torch.device | None = None) -> TrainingModel:
    """All weights frozen (the trainer adds the LoRA); no text encoder. The decoders (video VAE,
    audio VAE, vocoder) go to `decoders_device` (default: `device`); the trainer keeps them on the
    host and moves them to the GPU only while a preview decodes."""
    path = _check_dir(model_dir)
    decoders_device = decoders_device or device
    return TrainingModel(
        transformer=_load(LTX2VideoTransformer3DModel, path, "transformer", device, dtype),
        connectors=_load(LTX2TextConnectors, path, "connectors", device, dtype),
        vae=_load(AutoencoderKLLTX2Video, path, "vae", decoders_device, dtype),
        audio_vae=_load(AutoencoderKLLTX2Audio, path, "audio_vae", decoders_device, dtype),
        vocoder=_load(_vocoder_class(path), path, "vocoder", decoders_device, dtype),
        scheduler=FlowMatchEulerDiscreteScheduler.from_pretrained(path / "scheduler", local_files_only=True),
    )


def model_identity(model_dir: str | Path) -> dict:
    """Names the base model a LoRA was trained on: its directory and a hash of its configuration."""
    path = _check_dir(model_dir)
    digest = hashlib.sha256()
    for name in ("model_index.json", "transformer/config.json"):
        digest.update((path / name).read_bytes())
    transformer = json.loads((path / "transformer" / "config.json").read_text())
    return {"model_dir": str(path.resolve()), "config_sha256": digest.hexdigest(),
            "transformer_class": transformer["_class_name"], "num_layers": transformer["num_layers"]}
