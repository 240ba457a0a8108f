"""Seconds per training step, both modes.

CPU (default without a GPU): the tiny model, written to a temp dir and loaded like the real one.
GPU: the real-size LTX-2.3 transformer (random weights, the real 2.3 configuration, bf16, gradient
checkpointing) at the defaults, 89 frames at medium 1:1 (768x768) and 24 fps, rank 32, with
random latents in place of a dataset; prints s/step, peak GPU memory and model FLOPs utilisation.

    python bench/trainer_step.py [--steps 5] [--device cpu|cuda] [--frames 89] [--size 768x768]
    python bench/trainer_step.py --device cpu --real --layers 1 --frames 9 --size 128x128  # smoke check
"""

import argparse
import tempfile
import time

import torch
from torch.utils.flop_counter import FlopCounterMode
from diffusers import LTX2VideoTransformer3DModel

from avlora.model.components import load_for_training
from avlora.model.encode import audio_latent_count
from avlora.model.tiny import write_tiny_model
from services.trainer.data import Prompt, Sample
from services.trainer.losses import diffusion_loss, draw_noise
from services.trainer.strategies import Strategy, V2A_TARGET_MODULES, AV2AV_TARGET_MODULES
from services.trainer.tokens import Text, encode_text
from services.trainer.training import add_lora, autocast_for

# The real LTX-2.3 transformer: 48 blocks, video 32x128, audio 32x64, text 4096/2048 wide.
REAL_TRANSFORMER = dict(
    num_attention_heads=32, attention_head_dim=128, cross_attention_dim=4096, audio_num_attention_heads=32,
    audio_attention_head_dim=64, audio_cross_attention_dim=2048, num_layers=48, caption_channels=3840,
    gated_attn=True, cross_attn_mod=True, audio_gated_attn=True, audio_cross_attn_mod=True,
    rope_type="split", use_prompt_embeddings=False, perturbed_attn=True,
)
H100_BF16_PEAK_FLOPS = 989e12  # dense bf16 tensor-core peak of an H100 SXM (and of an H200)
TEXT_TOKENS = 1024


class RealSizeModel:
    """The real transformer with random weights; text arrives as connector-shaped random embeddings."""
    def __init__(self, device, layers: int = 48):
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        with torch.device("meta"):
            transformer = LTX2VideoTransformer3DModel(**(REAL_TRANSFORMER | {"num_layers": layers})).to(dtype)
        self.transformer = transformer.to_empty(device=device)
        for param in self.transformer.parameters():
            torch.nn.init.normal_(param, std=0.02)
        self.transformer.requires_grad_(False)


def real_text(device) -> Text:
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    return Text(torch.randn(1, TEXT_TOKENS, 4096, device=device, dtype=dtype),
                torch.randn(1, TEXT_TOKENS, 2048, device=device, dtype=dtype),
                torch.ones(1, TEXT_TOKENS, dtype=torch.int64, device=device))


def latents_sample(frames: int, width: int, height: int, fps: int, device) -> Sample:
    grid = ((frames - 1) // 8 + 1, height // 32, width // 32)
    audio = audio_latent_count(frames, fps)
    return Sample("bench", Prompt(torch.zeros(1, 1), torch.ones(1, dtype=torch.int64)),
                  video=torch.randn(1, 128, *grid, device=device), audio=torch.randn(1, 8, audio, 16, device=device),
                  ref_video=torch.randn(1, 128, *grid, device=device),
                  ref_audio=torch.randn(1, 8, audio, 16, device=device))


def training_flops(transformer, text, video, audio, generator, autocast) -> float:
    """Model FLOPs of one step: 2 x the forward's (the backward computes activation gradients
    only, the base being frozen; the LoRA's own FLOPs are negligible). Counted by torch's
    FlopCounterMode (matmuls and attention); gradient checkpointing's recomputation is not counted."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter, autocast():
        diffusion_loss(transformer, text, video, audio, draw_noise(video, audio, generator))
    return 2.0 * counter.get_total_flops()


def bench_mode(mode: str, transformer, text, sample: Sample, fps: int, rank: int, steps: int, device) -> dict:
    strategy = Strategy(mode, V2A_TARGET_MODULES if mode == "v2a" else AV2AV_TARGET_MODULES)
    params = add_lora(transformer, strategy, rank, seed=0)
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    autocast = autocast_for(device)
    video, audio = strategy.streams(transformer, sample, fps)
    generator = torch.Generator().manual_seed(0)
    tokens = video.count + audio.count + sum(s.reference.shape[1] for s in (video, audio) if s.reference is not None)
    times = []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for index in range(steps + 1):  # the first step warms up
        start = time.perf_counter()
        with autocast():
            loss, _ = diffusion_loss(transformer, text, video, audio, draw_noise(video, audio, generator))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if index:
            times.append(time.perf_counter() - start)
    seconds = sorted(times)[len(times) // 2]
    flops = training_flops(transformer, text, video, audio, generator, autocast)
    transformer.delete_adapters("default")
    result = {"mode": mode, "s_per_step": seconds, "tokens": tokens, "video_tokens": video.count,
              "audio_tokens": audio.count, "tflops_per_step": flops / 1e12}
    if device.type == "cuda":
        result["peak_gpu_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
        result["gpu"] = torch.cuda.get_device_name(device)
        result["mfu"] = flops / seconds / H100_BF16_PEAK_FLOPS
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--frames", type=int, default=89)
    parser.add_argument("--size", default="768x768")
    parser.add_argument("--fps", type=int, default=24)
    parser.add_argument("--rank", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (the trainer's default is 1)")
    parser.add_argument("--real", action="store_true", help="real-size transformer (default on a GPU)")
    parser.add_argument("--layers", type=int, default=48, help="blocks of the real-size transformer")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    if device.type == "cpu" and not args.real:  # the tiny model at 17 frames of 128x128
        model = load_for_training(write_tiny_model(tempfile.mkdtemp()), device)
        transformer, frames, width, height = model.transformer, 17, 128, 128
        sample = latents_sample(frames, width, height, args.fps, device)
        text = encode_text(model.connectors, Prompt(torch.randn(32, 96), torch.ones(32, dtype=torch.int64)))
    else:
        width, height = (int(v) for v in args.size.split("x"))
        frames, transformer = args.frames, RealSizeModel(device, args.layers).transformer
        if device.type == "cuda":
            transformer.enable_gradient_checkpointing()
        sample, text = latents_sample(frames, width, height, args.fps, device), real_text(device)
    print(f"device={device} frames={frames} size={width}x{height} rank={args.rank} "
          f"transformer_params={sum(p.numel() for p in transformer.parameters()) / 1e9:.2f}B")
    for mode in ("v2a", "av2av"):
        print(bench_mode(mode, transformer, text, sample, args.fps, args.rank, args.steps, device), flush=True)


if __name__ == "__main__":
    main()
