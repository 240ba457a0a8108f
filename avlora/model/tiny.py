"""A tiny random-weight LTX-2.3 in diffusers format: the real classes, the 2.3 flags, the real
compression factors and token sizes, tiny widths. Tests and the embedded default load it through
exactly the code that loads the real model (`avlora.model.components`)."""

import json
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKLLTX2Audio,
    AutoencoderKLLTX2Video,
    FlowMatchEulerDiscreteScheduler,
    LTX2VideoTransformer3DModel,
)
from diffusers.pipelines.ltx2 import LTX2TextConnectors, LTX2VocoderWithBWE
from transformers import Gemma3Config, Gemma3ForConditionalGeneration, GemmaTokenizer

SEED = 0
TEXT_HIDDEN = 32      # Gemma hidden size (real: 3840)
TEXT_LAYERS = 2       # Gemma layers (real: 48); the connectors take layers + 1 hidden states
TEXT_MAX_LENGTH = 32  # tokenizer max length (real: 1024); a multiple of the connector registers
VIDEO_WIDTH = 32      # transformer video width (real: 4096)
AUDIO_WIDTH = 16      # transformer audio width (real: 2048)
HEADS = 2             # attention heads, video and audio (real: 32)

# The LTX-2 scheduler configuration (flow matching, resolution-dependent shift).
SCHEDULER_CONFIG = dict(
    num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=True, base_shift=0.95, max_shift=2.05,
    base_image_seq_len=1024, max_image_seq_len=4096, shift_terminal=0.1, time_shift_type="exponential",
)


def _tokenizer() -> GemmaTokenizer:
    symbols = [chr(c) for c in range(32, 127)] + ["▁"]
    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<mask>": 4}
    vocab.update({s: 5 + i for i, s in enumerate(symbols)})
    tokenizer = GemmaTokenizer(vocab=vocab, merges=[], model_max_length=TEXT_MAX_LENGTH)
    tokenizer.padding_side = "left"
    return tokenizer


def _text_encoder(vocab_size: int) -> Gemma3ForConditionalGeneration:
    text = dict(
        vocab_size=vocab_size, hidden_size=TEXT_HIDDEN, intermediate_size=64,
        num_hidden_layers=TEXT_LAYERS, num_attention_heads=2, num_key_value_heads=1, head_dim=16,
        max_position_embeddings=TEXT_MAX_LENGTH * 4, sliding_window=16,
    )
    vision = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                  image_size=28, patch_size=14)
    config = Gemma3Config(text_config=text, vision_config=vision, mm_tokens_per_image=4,
                          image_token_index=vocab_size - 1, boi_token_index=vocab_size - 2,
                          eoi_token_index=vocab_size - 3)
    return Gemma3ForConditionalGeneration(config).eval()


def _connectors() -> LTX2TextConnectors:
    return LTX2TextConnectors(
        caption_channels=TEXT_HIDDEN, text_proj_in_factor=TEXT_LAYERS + 1,
        video_connector_num_attention_heads=HEADS, video_connector_attention_head_dim=VIDEO_WIDTH // HEADS,
        video_connector_num_layers=1, video_connector_num_learnable_registers=8, video_gated_attn=True,
        audio_connector_num_attention_heads=HEADS, audio_connector_attention_head_dim=AUDIO_WIDTH // HEADS,
        audio_connector_num_layers=1, audio_connector_num_learnable_registers=8, audio_gated_attn=True,
        rope_type="split", per_modality_projections=True,
        video_hidden_dim=VIDEO_WIDTH, audio_hidden_dim=AUDIO_WIDTH,
    )


def _transformer() -> LTX2VideoTransformer3DModel:
    return LTX2VideoTransformer3DModel(
        in_channels=128, out_channels=128, num_attention_heads=HEADS, attention_head_dim=VIDEO_WIDTH // HEADS,
        cross_attention_dim=VIDEO_WIDTH, audio_in_channels=128, audio_out_channels=128,
        audio_num_attention_heads=HEADS, audio_attention_head_dim=AUDIO_WIDTH // HEADS,
        audio_cross_attention_dim=AUDIO_WIDTH, num_layers=2, caption_channels=TEXT_HIDDEN,
        gated_attn=True, cross_attn_mod=True, audio_gated_attn=True, audio_cross_attn_mod=True,
        rope_type="split", use_prompt_embeddings=False, perturbed_attn=True,
    )


def _video_vae() -> AutoencoderKLLTX2Video:
    # The encoder's conv_in is as wide as the latents (128) and the first block's resnets run at
    # full (patched) resolution at that width: no resnet there (layers 0) cuts a CPU encode of
    # 25 frames at 512x288 about 3x. The compression factors (32x, 8x) and latent channels stay real.
    return AutoencoderKLLTX2Video(
        latent_channels=128, block_out_channels=(8, 16, 32, 64), layers_per_block=(0, 1, 1, 1, 1),
        down_block_types=("LTX2VideoDownBlock3D",) * 4,
        downsample_type=("spatial", "temporal", "spatiotemporal", "spatiotemporal"),
        spatio_temporal_scaling=(True, True, True, True),
        decoder_block_out_channels=(8, 16, 32), decoder_layers_per_block=(1, 1, 1, 1),
        decoder_spatio_temporal_scaling=(True, True, True), decoder_inject_noise=(False,) * 4,
        upsample_type=("spatiotemporal",) * 3, upsample_residual=(True, True, True), upsample_factor=(2, 2, 2),
        patch_size=4, spatial_compression_ratio=32, temporal_compression_ratio=8,
    )


def _audio_vae() -> AutoencoderKLLTX2Audio:
    # base_channels = latent_channels * mel_bins / 4: the latent statistics apply to packed tokens.
    return AutoencoderKLLTX2Audio(base_channels=128, ch_mult=(1, 1, 1), num_res_blocks=1, latent_channels=8,
                                  mel_bins=64, sample_rate=16000, mel_hop_length=160)


def _vocoder() -> LTX2VocoderWithBWE:
    return LTX2VocoderWithBWE(
        hidden_channels=64, upsample_kernel_sizes=[11, 4, 4, 4, 4, 4], upsample_factors=[5, 2, 2, 2, 2, 2],
        resnet_kernel_sizes=[3], resnet_dilations=[[1]],
        bwe_hidden_channels=32, bwe_upsample_kernel_sizes=[12, 11, 4, 4, 4], bwe_upsample_factors=[6, 5, 2, 2, 2],
        bwe_resnet_kernel_sizes=[3], bwe_resnet_dilations=[[1]],
    )


def write_tiny_model(directory: str | Path) -> Path:
    """Writes the tiny model (deterministic: seeded) as a diffusers-format directory and returns it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = _tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        components = {
            "transformer": _transformer(), "connectors": _connectors(), "vae": _video_vae(),
            "audio_vae": _audio_vae(), "vocoder": _vocoder(), "text_encoder": _text_encoder(len(tokenizer)),
        }
    for name, module in components.items():
        module.save_pretrained(directory / name)
    tokenizer.save_pretrained(directory / "tokenizer")
    FlowMatchEulerDiscreteScheduler(**SCHEDULER_CONFIG).save_pretrained(directory / "scheduler")
    index = {
        "_class_name": "LTX2Pipeline", "_diffusers_version": "0.42.1",
        "transformer": ["diffusers", "LTX2VideoTransformer3DModel"],
        "connectors": ["ltx2", "LTX2TextConnectors"],
        "vae": ["diffusers", "AutoencoderKLLTX2Video"],
        "audio_vae": ["diffusers", "AutoencoderKLLTX2Audio"],
        "vocoder": ["ltx2", "LTX2VocoderWithBWE"],
        "text_encoder": ["transformers", "Gemma3ForConditionalGeneration"],
        "tokenizer": ["transformers", "GemmaTokenizer"],
        "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
        "processor": [None, None], "prompt_enhancer": [None, None], "duration_head": [None, None],
    }
    (directory / "model_index.json").write_text(json.dumps(index, indent=2))
    return directory
