"""Seconds per training step, both modes.

CPU (default without a GPU): the tiny model, written to a temp dir and loaded like the real one,
at 17 frames of 128x128 unless --frames/--size say otherwise (the main job: --frames 25 --size 512x288).
GPU: the real-size LTX-2.3 transformer (random weights, the real 2.3 configuration, bf16, gradient
checkpointing) at the defaults, 89 frames at medium 1:1 (768x768) and 24 fps, rank 32, with
random latents in place of a dataset; prints s/step, peak GPU memory and model FLOPs utilisation.

    python bench/trainer_step.py [--steps 5] [--device cpu|cuda] [--frames 89] [--size 768x768]
    python bench/trainer_step.py --device cpu --real --layers 1 --frames 9 --size 128x128  # smoke check

The rows of issue 13's tables (the trainer's own switches, services/trainer/acceleration.py):
    today (eager, every block checkpointed)     --no-compile --checkpoint all
    each block torch.compile'd                  --compile --checkpoint all
    + the first N blocks not checkpointed       --compile --checkpoint N   (v2a 20, av2av 5)
    the trainer's default on CUDA               --compile --checkpoint budget
    LoRA weights computing in bf16              --lora-dtype bf16 (fp32 masters)
    activations offloaded, not recomputed       --offload-activations (not measured on a GPU yet)
    frozen linear weights in fp8                --fp8 --modes v2a (one mode per run; not measured on a GPU yet)
    kernel time by family (GEMM, attention...)  --profile
    worst allowed case                          --frames 121 --size 960x960 --modes av2av
MFU = 2 x the forward's FLOPs (torch.utils.flop_counter) / s_per_step / 989 TFLOP/s (H100 bf16).
fp8 (services/trainer/fp8.py) multiplies in fp8, but MFU is still counted against the bf16 peak.

What fits 80 GB. The seeds allow 9..121 frames, the buckets up to 960x960 (high 1:1) and
reference factors >= 1, which only shrink the reference. The most tokens a job can have is
therefore av2av at 121 frames 960x960 with both factors 1: 16x30x30 = 14 400 target + 14 400
reference video tokens and 2 x 126 audio tokens. Measured on an H100 with every block
checkpointed (eager): 65.0 GiB peak (gpu.md); compiled blocks use less (48.9 vs 50.9 GiB at
768x768 av2av). The budget only leaves blocks un-checkpointed in memory measured free after that
checkpointed step (less a 4 GiB margin), and checks its choice with a real step (on an H100 its
first v2a estimate, 42 blocks, ran out of memory; 30 fit), so every allowed combination should
train within 80 GB and no refusal at submit is needed (the worst case is yet to run on a GPU). Previews sample without gradients (one forward at a time), below the
training peak; the video decode of 121 frames at 960x960 (about 18 GiB extrapolated from 7.4 GiB
at 89x960x544) beside the 38 GiB of bf16 weights is the figure left to measure.
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
from avlora.modes import MODES
from services.trainer.data import Prompt, Sample
from services.trainer.losses import diffusion_loss, draw_noise
from services.trainer.strategies import Strategy
from services.trainer.tokens import Text, encode_text
from services.trainer import acceleration, fp8
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
    return Sample("bench", Prompt(torch.zeros(1, 1), torch.zeros(1, 1), torch.ones(1, dtype=torch.int64)),
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


# Kernel families of a CUDA profile, matched on the kernel's name (first match wins).
KERNEL_FAMILIES = (
    ("attention", ("flash", "fmha", "attention", "cudnn")),
    ("gemm", ("gemm", "cutlass", "xmma", "nvjet", "cublas", "wgmma")),
    ("fused (compiled)", ("triton",)),
    ("elementwise", ("elementwise", "vectorized", "unrolled", "copy", "cast", "mul", "add")),
    ("reduction/norm", ("reduce", "norm", "softmax")),
)


def kernel_family(name: str) -> str:
    lowered = name.lower()
    return next((family for family, keys in KERNEL_FAMILIES if any(k in lowered for k in keys)), "other")


def kernel_time_profile(step) -> str:
    """One step under torch.profiler: kernel time per family and the ten costliest kernels."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        start = time.perf_counter()
        step()
        wall = time.perf_counter() - start
    events = prof.key_averages()
    kernels = [e for e in events if e.device_type == torch.autograd.DeviceType.CUDA]
    kernels = kernels or [e for e in events if e.self_device_time_total > 0]
    total = sum(e.self_device_time_total for e in kernels) or 1
    families: dict[str, float] = {}
    for event in kernels:
        family = kernel_family(event.key)
        families[family] = families.get(family, 0) + event.self_device_time_total
    lines = [f"profile: step {wall:.3f} s, kernel time {total / 1e6:.3f} s"]
    lines += [f"  {family:18s} {t / total:6.1%}" for family, t in sorted(families.items(), key=lambda x: -x[1])]
    for event in sorted(kernels, key=lambda e: -e.self_device_time_total)[:10]:
        lines.append(f"  {event.self_device_time_total / total:6.1%}  {event.key[:90]}")
    return "\n".join(lines)


def bench_mode(mode: str, transformer, text, sample: Sample, fps: int, rank: int, steps: int, device,
               args) -> dict:
    strategy = Strategy(MODES[mode])
    params = add_lora(transformer, strategy, rank, seed=0)
    masters = None
    if args.lora_dtype == "bf16":
        masters = acceleration.LoraMasterWeights(params, torch.bfloat16)
        params = masters.masters
    if args.fp8:
        print(f"fp8 base weights: {fp8.use_fp8_weights(transformer)} linear layers", flush=True)
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    if masters:
        masters.attach(optimizer)
    autocast = autocast_for(device)
    video, audio = strategy.streams(transformer, sample, fps)
    generator = torch.Generator().manual_seed(0)
    unchecked = 0
    if device.type == "cuda":
        def probe_step():
            try:
                with autocast():
                    loss, _ = diffusion_loss(transformer, text, video, audio, draw_noise(video, audio, generator))
                loss.backward()
            finally:
                optimizer.zero_grad(set_to_none=True)
        unchecked = acceleration.choose_checkpointing(transformer, args.checkpoint, probe_step, device,
                                                      args.margin_gib, acceleration.lora_bytes(params), print,
                                                      args.offload_activations)
    tokens = video.count + audio.count + sum(s.reference.shape[1] for s in (video, audio) if s.reference is not None)
    times = []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()

    def step():
        with autocast():
            loss, _ = diffusion_loss(transformer, text, video, audio, draw_noise(video, audio, generator))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()

    for index in range(steps + 2):  # the first two steps warm up (and compile)
        start = time.perf_counter()
        step()
        if index > 1:
            times.append(time.perf_counter() - start)
    seconds = sorted(times)[len(times) // 2]
    if args.profile and device.type == "cuda":
        print(kernel_time_profile(step), flush=True)
    flops = training_flops(transformer, text, video, audio, generator, autocast)
    transformer.delete_adapters("default")
    result = {"mode": mode, "compile": args.compile, "unchecked_blocks": unchecked, "lora_dtype": args.lora_dtype,
              "offload_activations": args.offload_activations, "fp8": args.fp8, "s_per_step": seconds,
              "tokens": tokens, "video_tokens": video.count, "audio_tokens": audio.count,
              "tflops_per_step": flops / 1e12}
    if device.type == "cuda":
        result["peak_gpu_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
        result["gpu"] = torch.cuda.get_device_name(device)
        result["mfu"] = flops / seconds / H100_BF16_PEAK_FLOPS
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--frames", type=int, help="default: 89, the tiny model on a CPU 17")
    parser.add_argument("--size", help="default: 768x768, the tiny model on a CPU 128x128")
    parser.add_argument("--fps", type=int, default=24)
    parser.add_argument("--rank", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (the trainer's default is 1)")
    parser.add_argument("--real", action="store_true", help="real-size transformer (default on a GPU)")
    parser.add_argument("--layers", type=int, default=48, help="blocks of the real-size transformer")
    parser.add_argument("--modes", default="v2a,av2av")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="regional compilation of the blocks (default: on for CUDA, as the trainer)")
    parser.add_argument("--checkpoint", default="budget",
                        help="CUDA: budget | all | none | N blocks left un-checkpointed (as the trainer)")
    parser.add_argument("--margin-gib", type=float, default=4.0, help="safety margin of the budget")
    parser.add_argument("--lora-dtype", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--fp8", action="store_true", help="the blocks' frozen linear weights in fp8 (one mode per run)")
    parser.add_argument("--offload-activations", action="store_true",
                        help="CUDA: checkpointed blocks keep their activations in pinned host memory instead")
    parser.add_argument("--profile", action="store_true", help="CUDA: kernel time by family of one more step")
    args = parser.parse_args()
    if args.fp8 and "," in args.modes:
        parser.error("--fp8 replaces the transformer's linear layers for good: one mode per run (--modes v2a)")
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    tiny = device.type == "cpu" and not args.real
    frames = args.frames or (17 if tiny else 89)
    width, height = (int(v) for v in (args.size or ("128x128" if tiny else "768x768")).split("x"))
    sample = latents_sample(frames, width, height, args.fps, device)
    if tiny:
        model = load_for_training(write_tiny_model(tempfile.mkdtemp()), device)
        transformer = model.transformer
        text = encode_text(model.connectors, Prompt(torch.randn(32, 32), torch.randn(32, 16),
                                                    torch.ones(32, dtype=torch.int64)))
    else:
        transformer, text = RealSizeModel(device, args.layers).transformer, real_text(device)
    if args.compile is None:
        args.compile = device.type == "cuda"
    print(f"device={device} frames={frames} size={width}x{height} rank={args.rank} "
          f"transformer_params={sum(p.numel() for p in transformer.parameters()) / 1e9:.2f}B")
    for mode in args.modes.split(","):
        if args.compile:  # afresh for each mode's LoRA, as the trainer does for each job's model
            acceleration.compile_blocks(transformer)
        print(bench_mode(mode, transformer, text, sample, args.fps, args.rank, args.steps, device, args), flush=True)


if __name__ == "__main__":
    main()
