"""The trained LoRA as files: diffusers format (what LTX2Pipeline.load_lora_weights loads, alpha in
its adapter metadata), the ComfyUI/Lightricks format (`diffusion_model.` keys, bf16 as Lightricks'
trainer saves them, alpha/rank folded into lora_B since that format carries no alpha), and the
config JSON describing the run. Both LoRA files carry the same safetensors metadata (lora_metadata):
the reference factors as Lightricks' pipelines read them, plus mode, rank, alpha, trigger phrase and
base model."""

import json
import tempfile
from pathlib import Path

import torch
from diffusers import LTX2Pipeline
from peft import get_peft_model_state_dict
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from services.trainer.training import optimiser_config

DIFFUSERS_WEIGHT_NAME = "pytorch_lora_weights.safetensors"


def lora_weights(transformer) -> dict[str, torch.Tensor]:
    """The adapter's tensors with peft's diffusers-style keys (`transformer_blocks.0.attn1.to_q.lora_A.weight`)."""
    return {k: v.detach().float().cpu().contiguous() for k, v in get_peft_model_state_dict(transformer).items()}


def lora_metadata(params, strategy, model_identity: dict) -> dict[str, str]:
    """Safetensors metadata (strings) of both LoRA files. The reference factors use Lightricks' keys
    and appear only when not 1 (their readers default to 1); the rest describes the run."""
    return {**strategy.lora_metadata(), "mode": strategy.name, "rank": str(params.rank),
            "alpha": str(params.rank), "trigger_phrase": params.trigger_phrase,
            "base_model": json.dumps(model_identity, sort_keys=True)}


def read_lora_metadata(path: Path) -> dict[str, str]:
    with safe_open(str(path), framework="pt") as file:
        return dict(file.metadata() or {})


def write_diffusers_lora(transformer, path: Path, metadata: dict[str, str]) -> Path:
    config = transformer.peft_config["default"]
    with tempfile.TemporaryDirectory() as work:
        LTX2Pipeline.save_lora_weights(work, transformer_lora_layers=lora_weights(transformer),
                                       transformer_lora_adapter_metadata=config.to_dict(),
                                       weight_name=DIFFUSERS_WEIGHT_NAME)
        written = Path(work, DIFFUSERS_WEIGHT_NAME)
        save_file(load_file(str(written)), str(path), metadata=read_lora_metadata(written) | metadata)
    return path


def comfyui_weights(weights: dict[str, torch.Tensor], rank: int, alpha: float) -> dict[str, torch.Tensor]:
    scale = alpha / rank
    return {f"diffusion_model.{key}": value * scale if ".lora_B." in key else value
            for key, value in weights.items()}


def write_comfyui_lora(transformer, path: Path, metadata: dict[str, str]) -> Path:
    config = transformer.peft_config["default"]
    weights = comfyui_weights(lora_weights(transformer), config.r, config.lora_alpha)
    save_file({key: value.to(torch.bfloat16).contiguous() for key, value in weights.items()}, str(path),
              metadata=metadata)
    return path


def training_config(params, strategy, model_identity: dict, steps: int, width: int, height: int,
                    result) -> dict:
    """What the config_file says about the run."""
    return {
        "trigger_phrase": params.trigger_phrase,
        "mode": params.mode,
        "training_type": strategy.training_type,
        "rank": params.rank,
        "alpha": params.rank,
        "target_modules": list(strategy.target_modules),
        "learning_rate": params.learning_rate,
        **optimiser_config(params.learning_rate),
        "number_of_steps": params.number_of_steps,
        "steps_completed": steps,
        "number_of_frames": params.number_of_frames,
        "frame_rate": params.frame_rate,
        "resolution": {"name": params.resolution, "aspect_ratio": params.aspect_ratio,
                       "width": width, "height": height},
        "reference_downscale_factor": strategy.reference_downscale_factor,
        "reference_temporal_scale_factor": strategy.reference_temporal_scale_factor,
        "validation_loss": result.validation_loss,
        "baseline_validation_loss": result.baseline_validation_loss,
        "validation_loss_on": result.validation_loss_on,  # "held_out" clips, or "training_clips" (< 20 clips)
        "base_model": model_identity,
        "lora_format": {"lora_file": "diffusers (LTX2Pipeline.load_lora_weights)",
                        "lora_comfyui_file": "ComfyUI/Lightricks (diffusion_model. keys, alpha folded, bf16)"},
    }


def write_config(config: dict, path: Path) -> Path:
    path.write_text(json.dumps(config, indent=2))
    return path
