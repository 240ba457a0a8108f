"""The trainer stage: TrainingSet in, trained LoRA + config + previews (the LoRA's and the base
model's) and their audio figures out (jobs/<job>/outputs/).

Idempotent: a finished job returns its recorded outputs; an interrupted one resumes from its last
checkpoint (services/trainer/training.py). With several GPUs, one job trains on all of them
(services/trainer/launcher.py)."""

import torch

from avlora.model.components import load_for_training, model_identity
from avlora.v1 import jobs_pb2
from services.trainer import status
from services.trainer.data import (
    TRAINING_CLIPS, StoredSamples, load_prompt, load_sample, load_training_set, split_holdout,
)
from services.trainer.evidence import write_final_previews
from services.trainer.launcher import run_distributed, training_processes
from services.trainer.lora_files import (
    lora_metadata, training_config, write_comfyui_lora, write_config, write_diffusers_lora,
)
from services.trainer.previews import PreviewItem, PreviewRenderer, latent_grid, render_to_store
from services.trainer.strategies import strategy_for
from services.trainer.training import Trainer, TrainerOptions, autocast_for


def preview_items(ctx, strategy, training_set, held_out, vae) -> list[PreviewItem]:
    """The validation entries at the validation frame rate and size; with none, the first held-out sample."""
    store, params = ctx.store, ctx.params
    if training_set.validation:
        grid = latent_grid(vae, params.validation_number_of_frames, params.validation_size)
        return [PreviewItem(load_sample(store, f"validation{v.index}", v.uri, strategy.cache_keys, "validation"),
                            params.validation_frame_rate, grid)
                for v in sorted(training_set.validation, key=lambda v: v.index)]
    return [PreviewItem(held_out[0], ctx.params.frame_rate)]


def run(ctx) -> jobs_pb2.Outputs:
    done_key = ctx.files.outputs_record
    if ctx.store.exists(done_key):
        return jobs_pb2.Outputs.FromString(ctx.store.read_bytes(done_key))
    if not ctx.settings.model_dir:
        raise RuntimeError("AVLORA_MODEL_DIR is not set: the trainer needs a local LTX-2.3 model directory")
    options = TrainerOptions.from_env()
    processes = training_processes(options)
    device = torch.device(options.device)
    status.begin(ctx.job_id, ctx.params.number_of_steps,
                 f"{processes} x {device}" if processes > 1 else str(device), ctx.settings.model_dir)
    threads = torch.get_num_threads()
    try:
        if processes > 1:
            run_distributed(ctx, processes)
            return jobs_pb2.Outputs.FromString(ctx.store.read_bytes(done_key))
        if device.type == "cpu":
            torch.set_num_threads(options.cpu_threads)
        return train(ctx, options, device)
    finally:
        torch.set_num_threads(threads)
        status.end()


def train(ctx, options: TrainerOptions, device: torch.device, world=None) -> jobs_pb2.Outputs | None:
    """Trains the job on this device and, on the leading rank, writes and returns its outputs."""
    store = ctx.store
    training_set = load_training_set(store, ctx.input_uri)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    model = load_for_training(ctx.settings.model_dir, device, dtype, decoders_device="cpu")
    strategy = strategy_for(ctx.params)
    if not training_set.samples:
        raise ValueError(f"training set {ctx.input_uri} has no samples")
    split = split_holdout(list(training_set.samples))
    # read on use, a few ahead; pinned on a GPU for fast copies (one sample at a time goes to it)
    train_samples = StoredSamples(store, split.train, strategy.cache_keys, pin=device.type == "cuda")
    held_out = (train_samples if split.validation_loss_on == TRAINING_CLIPS
                else StoredSamples(store, split.validation, strategy.cache_keys, pin=device.type == "cuda"))
    try:
        return _train(ctx, options, model, strategy, training_set, train_samples, held_out,
                      split.validation_loss_on, world)
    finally:
        train_samples.close()
        held_out.close()


def _train(ctx, options, model, strategy, training_set, train_samples, held_out, validation_loss_on,
           world) -> jobs_pb2.Outputs | None:
    store, files, model_dir, device = ctx.store, ctx.files, ctx.settings.model_dir, model.transformer.device
    renderer = PreviewRenderer(model, strategy, load_prompt(store, training_set.negative_prompt_uri),
                               options.sampling_steps, ctx.params.stg_scale, autocast_for(device), options.seed)
    items = preview_items(ctx, strategy, training_set, held_out, model.vae)
    suffix = strategy.preview_suffix

    def sampling_progress(done: int, total: int, message: str) -> None:
        ctx.progress(done, total, "sampling steps", message)

    def preview(step: int) -> None:
        uri = render_to_store(renderer, items, store, files.interval_preview(step, suffix), ctx.cancelled,
                              sampling_progress)
        ctx.log(f"validation preview at step {step}: {uri}")

    trainer = Trainer(ctx, model, strategy, train_samples, held_out, training_set.frame_rate or
                      ctx.params.frame_rate, options, on_preview=preview, world=world,
                      validation_loss_on=validation_loss_on)
    result = trainer.run()
    if not trainer.leader:
        return None
    ctx.log(f"validation loss {result.validation_loss:.4f} (untrained {result.baseline_validation_loss:.4f}, "
            f"on {result.validation_loss_on.replace('_', ' ')})")
    transformer = model.transformer
    identity = model_identity(model_dir)
    config = training_config(ctx.params, strategy, identity, result.steps, training_set.width,
                             training_set.height, result)
    metadata = lora_metadata(ctx.params, strategy, identity)
    outputs = jobs_pb2.Outputs(
        lora_file=store.put_written(files.output("lora.safetensors"),
                                    lambda p: write_diffusers_lora(transformer, p, metadata)),
        lora_comfyui_file=store.put_written(files.output("lora_comfyui.safetensors"),
                                            lambda p: write_comfyui_lora(transformer, p, metadata)),
        config_file=store.put_written(files.output("config.json"), lambda p: write_config(config, p)),
        debug_dataset=training_set.debug_dataset_uri if ctx.params.debug_dataset else "",
    )
    write_final_previews(ctx, renderer, items, training_set, outputs, sampling_progress)
    ctx.raise_if_cancelled()
    store.write_bytes(files.outputs_record, outputs.SerializeToString())
    return outputs
