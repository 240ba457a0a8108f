"""A real-size training job through the trainer stage (services/trainer/stage.py), on a GPU.

Writes a random-weight LTX-2.3-sized model in diffusers format (the real 48-block transformer and
3.17 B connectors; the video VAE, audio VAE and BWE vocoder at diffusers' default sizes; no text
encoder, which only preprocessing needs), then a cached training set of random latents at the
job's real shapes (what preprocessing would have written), and runs `stage.run` on it: model
loading, the speed switches, training, validation loss, the LoRA files and the preview. Prints
each stage event with its time, and the peak GPU memory.

    python bench/real_job.py --mode v2a --steps 10                       # 89 frames, medium 1:1
    python bench/real_job.py --mode av2av --frames 121 --resolution high --steps 4 --sampling-steps 4  # worst case
    python bench/real_job.py --tiny --frames 9 --resolution low --validation-resolution low --steps 2  # CPU smoke check

Trainer switches come from the AVLORA_TRAIN_* variables, as in the service.
"""

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch
from diffusers import AutoencoderKLLTX2Audio, AutoencoderKLLTX2Video, FlowMatchEulerDiscreteScheduler
from diffusers import LTX2VideoTransformer3DModel
from diffusers.pipelines.ltx2 import LTX2TextConnectors, LTX2VocoderWithBWE

from avlora.model.cache import (
    AUDIO_LATENTS, REF_AUDIO_LATENTS, REF_VIDEO_LATENTS, VIDEO_LATENTS, to_bytes,
)
from avlora.model.encode import TEXT_LENGTH, audio_latent_count, prompt_to_cache
from avlora.model.tiny import SCHEDULER_CONFIG, write_tiny_model
from avlora.model.tiny import TEXT_MAX_LENGTH as TINY_TEXT_LENGTH
from avlora.job_state import output_uris
from avlora.params import MODES
from avlora.settings import Settings
from avlora.stage import JobContext
from avlora.store import LocalStore
from avlora.v1 import dataset_pb2
from services.trainer import stage
from services.trainer.strategies import strategy_for
from trainer_step import REAL_TRANSFORMER

# LTX-2.3's connectors: Gemma 3's 49 stacked hidden states (3840 wide) projected per modality,
# 8 gated layers each (3.17 B parameters).
REAL_CONNECTORS = dict(
    caption_channels=3840, text_proj_in_factor=49, video_connector_num_attention_heads=32,
    video_connector_attention_head_dim=128, video_connector_num_layers=8, video_gated_attn=True,
    audio_connector_num_attention_heads=32, audio_connector_attention_head_dim=64,
    audio_connector_num_layers=8, audio_gated_attn=True, rope_type="split", per_modality_projections=True,
    video_hidden_dim=4096, audio_hidden_dim=2048,
)
PROMPT_TOKENS = 40  # valid tokens of each random prompt


def write_model(directory: Path, layers: int, device: torch.device) -> Path:
    """The real-size components with their default initialisation, made on `device` in bf16."""
    if (directory / "model_index.json").is_file():
        return directory
    components = {
        "transformer": lambda: LTX2VideoTransformer3DModel(**(REAL_TRANSFORMER | {"num_layers": layers})),
        "connectors": lambda: LTX2TextConnectors(**REAL_CONNECTORS),
        "vae": AutoencoderKLLTX2Video, "audio_vae": AutoencoderKLLTX2Audio, "vocoder": LTX2VocoderWithBWE,
    }
    default_dtype = torch.get_default_dtype()
    for name, make in components.items():
        torch.set_default_dtype(torch.bfloat16)
        try:
            with device:
                module = make()
        finally:
            torch.set_default_dtype(default_dtype)
        module.save_pretrained(directory / name, max_shard_size="10GB")
        del module
        if device.type == "cuda":
            torch.cuda.empty_cache()
    FlowMatchEulerDiscreteScheduler(**SCHEDULER_CONFIG).save_pretrained(directory / "scheduler")
    index = {"_class_name": "LTX2Pipeline", "_diffusers_version": "0.42.1",
             "transformer": ["diffusers", "LTX2VideoTransformer3DModel"],
             "connectors": ["ltx2", "LTX2TextConnectors"], "vae": ["diffusers", "AutoencoderKLLTX2Video"],
             "audio_vae": ["diffusers", "AutoencoderKLLTX2Audio"], "vocoder": ["ltx2", "LTX2VocoderWithBWE"],
             "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"]}
    (directory / "model_index.json").write_text(json.dumps(index, indent=2))
    return directory


def random_prompt(widths: tuple[int, int], length: int) -> dict[str, torch.Tensor]:
    """A prompt's cached features (video and audio connector widths) with PROMPT_TOKENS valid tokens."""
    mask = torch.zeros(length, dtype=torch.int64)
    mask[-PROMPT_TOKENS:] = 1  # left padding, as the tokenizer pads
    return prompt_to_cache(torch.randn(length, widths[0]), torch.randn(length, widths[1]), mask)


def latents(frames: int, fps: int, size: tuple[int, int], spatial: int = 1, temporal: int = 1) -> tuple:
    width, height = size
    grid = ((frames - 1) // temporal // 8 + 1, height // spatial // 32, width // spatial // 32)
    return torch.randn(128, *grid), torch.randn(8, audio_latent_count(frames, fps), 16)


def write_training_set(store: LocalStore, params, samples: int, prompt_widths: tuple[int, int],
                       prompt_length: int) -> str:
    """Random latents at the job's shapes, in the cache format preprocessing writes."""
    root = "jobs/set/preprocess"
    keys = strategy_for(params).cache_keys
    spatial, temporal = params.reference_factors

    def put(key: str, tensors: dict) -> str:
        return store.write_bytes(f"{root}/{key}.safetensors", to_bytes(tensors))

    def clip(frames: int, fps: int, size: tuple[int, int], kind: str) -> dict:
        video, audio = latents(frames, fps, size)
        ref_video, ref_audio = latents(frames, fps, size, spatial, temporal)
        tensors = {VIDEO_LATENTS: video, AUDIO_LATENTS: audio, REF_VIDEO_LATENTS: ref_video,
                   REF_AUDIO_LATENTS: ref_audio}
        return {k: tensors[k] for k in getattr(keys, kind)} | random_prompt(prompt_widths, prompt_length)

    (width, height), validation_size = params.size, params.validation_size
    training_set = dataset_pb2.TrainingSet(job_id="set", mode=params.mode, width=width, height=height,
                                           frame_rate=params.frame_rate)
    for index in range(samples):
        uri = put(f"clip{index}", clip(params.number_of_frames, params.frame_rate, params.size, "training"))
        training_set.samples.add(name=f"clip{index}", caption="random", uri=uri)
    uri = put("validation0", clip(params.validation_number_of_frames, params.validation_frame_rate,
                                  validation_size, "validation"))
    training_set.validation.add(index=0, prompt="random", uri=uri)
    training_set.negative_prompt_uri = put("negative", random_prompt(prompt_widths, prompt_length))
    return store.write_bytes(f"{root}/training_set.pb", training_set.SerializeToString())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mode", choices=list(MODES), default="v2a")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--frames", type=int, default=89)
    parser.add_argument("--resolution", default="medium", help="training size bucket (1:1)")
    parser.add_argument("--validation-resolution", default="high", help="preview size bucket (1:1)")
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--sampling-steps", type=int, default=30, help="Euler steps of the preview")
    parser.add_argument("--layers", type=int, default=48)
    parser.add_argument("--tiny", action="store_true", help="the tiny model instead (a smoke check of this script)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--model-dir", default="", help="kept between runs (default: a temp dir)")
    parser.add_argument("--work-dir", default="")
    args = parser.parse_args()
    device = torch.device(args.device)
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="real-job-"))
    started = time.perf_counter()
    model_dir = Path(args.model_dir) if args.model_dir else work / "model"
    model_dir = write_tiny_model(model_dir) if args.tiny else write_model(model_dir, args.layers, device)
    print(f"model at {model_dir} ({time.perf_counter() - started:.1f} s)", flush=True)
    params = MODES[args.mode](training_data_url="upload://data", number_of_frames=args.frames,
                          validation_number_of_frames=args.frames, resolution=args.resolution,
                          validation_resolution=args.validation_resolution)
    params = params.model_copy(update={"number_of_steps": args.steps})  # a short run: below the seeds' 100
    store = LocalStore(work / "store")
    connectors = json.loads((model_dir / "connectors" / "config.json").read_text())
    prompt_length = TINY_TEXT_LENGTH if args.tiny else TEXT_LENGTH
    uri = write_training_set(store, params, args.samples,
                             (connectors["video_hidden_dim"], connectors["audio_hidden_dim"]), prompt_length)
    os.environ.setdefault("AVLORA_TRAIN_SAMPLING_STEPS", str(args.sampling_steps))
    os.environ.setdefault("AVLORA_TRAIN_VALIDATION_EVERY", str(max(1, args.steps // 2)))
    os.environ.setdefault("AVLORA_TRAIN_DEVICE", device.type)
    ctx = JobContext.for_test("real-job", params, store, uri, stage="train",
                              settings=Settings(model_dir=str(model_dir), store=str(store.root),
                                                data_dir=work, scratch=str(work / "scratch")))
    job_start = time.perf_counter()

    def show(event) -> None:
        p = event.progress
        losses = " ".join(f"{k}={getattr(p, k):.4f}" for k in ("loss", "validation_loss") if getattr(p, k))
        print(f"[{time.perf_counter() - job_start:7.1f} s] {p.stage} {p.done}/{p.total} {p.unit} {losses} "
              f"{p.message}".rstrip(), flush=True)

    ctx.emit = show
    ctx.throttle.interval_s = 0
    outputs = stage.run(ctx)
    seconds = time.perf_counter() - job_start
    sizes = {field: store.size(uri) for field, uri in output_uris(outputs).items()}
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else 0.0
    print(json.dumps({"mode": args.mode, "frames": args.frames, "size": list(params.size), "steps": args.steps,
                      "job_seconds": round(seconds, 1), "peak_gpu_memory_gib": round(peak, 1),
                      "outputs": sizes}), flush=True)


if __name__ == "__main__":
    main()
