"""The training loop, one for both modes (the strategy says what is noised and scored): LoRA on the
strategy's modules, AdamW with gradient clipping and a linear learning-rate decay (Lightricks'
presets), samples on the host moved to the device one per step, bf16 autocast on a GPU with the speed switches
of acceleration.py (compiled blocks, checkpointing by memory budget; fp32 on the CPU), progress at a bounded rate, a held-out validation loss at intervals with the
untrained baseline, atomic checkpoints every N steps, resume from the last one, prompt cancellation.
With a `world` (services/trainer/distributed.py) each rank trains on its own clips, the gradients are
averaged over the ranks, and only rank 0 writes checkpoints and previews."""

import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from peft import LoraConfig, get_peft_model_state_dict, set_peft_model_state_dict

from avlora import config
from avlora.stage import JobCancelled
from services.trainer import acceleration, fp8, status
from services.trainer.checkpoints import load_checkpoint, save_checkpoint
from services.trainer.data import HELD_OUT, Sample
from services.trainer.losses import diffusion_loss, draw_noise, validation_loss
from services.trainer.strategies import Strategy
from services.trainer.tokens import encode_text

# As Lightricks' ltx-trainer presets: AdamW with torch's defaults but the learning rate (weight decay
# 0.01), gradient norm clipped at 1, learning rate decayed linearly to 10 % over the run, no warm-up.
GRAD_CLIP_NORM = 1.0
WEIGHT_DECAY = 0.01
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8
FINAL_LR_FACTOR = 0.1


def learning_rate(base: float, step: int, total: int) -> float:
    """The learning rate of (0-based) step `step` of `total`: torch's LinearLR from 1.0 to FINAL_LR_FACTOR."""
    return base * (1 - (1 - FINAL_LR_FACTOR) * min(step, total) / total)


def optimiser_config(base_lr: float) -> dict:
    """What config.json records about the optimiser and its schedule."""
    return {"optimizer": {"name": "AdamW", "learning_rate": base_lr, "weight_decay": WEIGHT_DECAY,
                          "betas": list(ADAM_BETAS), "eps": ADAM_EPS, "max_grad_norm": GRAD_CLIP_NORM},
            "lr_schedule": {"type": "linear", "start_factor": 1.0, "end_factor": FINAL_LR_FACTOR,
                            "warmup_steps": 0}}


@dataclass(frozen=True)
class TrainerOptions:
    """How a job trains: intervals (0: derived from the number of steps), device and processes, and
    the speed switches. From AVLORA_TRAIN_* variables."""
    ENV_PREFIX = "TRAIN_"
    checkpoint_every: int = 0     # default: every 100 steps
    validation_every: int = 0     # default: 10 times per run
    preview_every: int = 0        # default: every max(500, steps // 4) steps (and always at the end)
    sampling_steps: int = 30      # Euler steps of the validation previews
    seed: int = 0                 # LoRA initialisation and the draws of noise and timesteps
    cpu_threads: int = 1          # the tiny model's small ops run fastest on one thread
    # cuda or cpu; default cuda when a GPU is visible
    device: str = field(default_factory=lambda: "cuda" if torch.cuda.is_available() else "cpu")
    processes: int = 0            # processes (GPUs) one job trains on; 0: one per visible GPU, 1 without CUDA
    # Speed (services/trainer/acceleration.py); none changes what is learned beyond rounding.
    compile: bool | None = None   # regional torch.compile of the blocks; unset: on for CUDA, off on CPU
    checkpoint: str = "budget"    # CUDA: "budget" (as many blocks un-checkpointed as fit), "all", "none" or N
    memory_margin_gib: float = 4.0  # GPU memory the checkpointing budget leaves free
    # CUDA: blocks past the budget keep their saved activations in pinned host memory instead of being
    # recomputed, as many as fit in half the host's available memory (not yet measured on a GPU)
    offload_activations: bool = False
    lora_dtype: str = "fp32"      # "bf16": LoRA weights compute in bf16 on CUDA (fp32 masters)
    # the blocks' frozen linear weights in fp8 (services/trainer/fp8.py); off until its loss drift
    # and speed are measured on the real model
    fp8: bool = False

    def __post_init__(self):
        if self.lora_dtype not in ("fp32", "bf16"):
            raise ValueError(f"AVLORA_TRAIN_LORA_DTYPE={self.lora_dtype!r}: fp32 or bf16")
        if self.checkpoint not in ("budget", "all", "none") and not self.checkpoint.isdigit():
            raise ValueError(f"AVLORA_TRAIN_CHECKPOINT={self.checkpoint!r}: budget, all, none or a number of blocks")

    @classmethod
    def from_env(cls) -> "TrainerOptions":
        return config.from_env(cls)

    def intervals(self, total_steps: int) -> tuple[int, int, int]:
        """(checkpoint, validation, preview) intervals in steps."""
        return (self.checkpoint_every or 100, self.validation_every or max(1, total_steps // 10),
                self.preview_every or max(500, total_steps // 4))


def autocast_for(device: torch.device):
    """bf16 autocast on a GPU, nothing (fp32) on the CPU."""
    if device.type == "cuda":
        return lambda: torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext


def add_lora(transformer, strategy: Strategy, rank: int, seed: int) -> list[torch.nn.Parameter]:
    """Adds the LoRA (alpha = rank) and returns its parameters, kept in fp32."""
    torch.manual_seed(seed)
    transformer.add_adapter(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights=True,
                                       target_modules=list(strategy.target_modules)))
    params = [p for p in transformer.parameters() if p.requires_grad]
    for param in params:
        param.data = param.data.float()
    return params


@dataclass
class TrainingResult:
    steps: int
    validation_loss: float
    baseline_validation_loss: float
    validation_loss_on: str = HELD_OUT  # or TRAINING_CLIPS (services/trainer/data.py)


class Trainer:
    """Trains one job's LoRA; `run` resumes from the job's checkpoint when there is one."""

    def __init__(self, ctx, model, strategy: Strategy, samples: Sequence[Sample], held_out: Sequence[Sample],
                 fps: float, options: TrainerOptions, on_preview=None, world=None, validation_loss_on: str = HELD_OUT):
        """`samples`/`held_out`: lists, or StoredSamples (read on use; the next step's sample is
        prefetched). `validation_loss_on` says which of the two the held-out ones are."""
        self.ctx, self.model, self.strategy, self.options = ctx, model, strategy, options
        self.validation_loss_on = validation_loss_on
        self.fps, self.on_preview, self.world = fps, on_preview, world
        self.leader = world is None or world.rank == 0
        transformer = model.transformer
        self.device = transformer.device
        if self.device.type == "cuda":  # the peak reported is this job's (a trainer runs many)
            torch.cuda.reset_peak_memory_stats(self.device)
        self.autocast = autocast_for(self.device)
        self.total = ctx.params.number_of_steps
        self.params = add_lora(transformer, strategy, ctx.params.rank, options.seed)
        self.masters = None  # speed switches (acceleration.py, fp8.py): LoRA dtype, fp8, compile, checkpointing
        if options.lora_dtype == "bf16" and self.device.type == "cuda":
            self.masters = acceleration.LoraMasterWeights(self.params, torch.bfloat16)
            self.params = self.masters.masters
        if options.fp8:
            converted = fp8.use_fp8_weights(transformer)
            ctx.log(f"fp8 base weights: {converted} linear layers of the transformer blocks")
        if options.compile if options.compile is not None else self.device.type == "cuda":
            acceleration.compile_blocks(transformer)
            ctx.log("transformer blocks compiled on first use: the first steps take a minute or two longer")
        self.optimizer = torch.optim.AdamW(self.params, lr=ctx.params.learning_rate, weight_decay=WEIGHT_DECAY,
                                           betas=ADAM_BETAS, eps=ADAM_EPS)
        if self.masters:
            self.masters.attach(self.optimizer)
        self.generator = torch.Generator().manual_seed(options.seed)
        self.tokens_trained = 0  # by this rank's training steps, counted from the start of `run`
        self.samples, self.held_out = samples, held_out  # on the host; one at a time goes to the device
        if self.device.type == "cuda":
            def probe_step() -> None:  # its own draws: the training's stay untouched
                try:
                    self.backward(torch.Generator().manual_seed(options.seed))
                finally:
                    self.optimizer.zero_grad(set_to_none=True)
            acceleration.choose_checkpointing(transformer, options.checkpoint, probe_step, self.device,
                                              options.memory_margin_gib, acceleration.lora_bytes(self.params),
                                              ctx.log, options.offload_activations)

    def _prepare(self, sample: Sample):
        """(text, video stream, audio stream) of a sample, on the device, text through the connectors."""
        sample = sample.to(self.device, torch.float32)
        text = encode_text(self.model.connectors, sample.prompt)
        return (text, *self.strategy.streams(self.model.transformer, sample, self.fps))

    def _state(self, step: int, losses: dict) -> dict:
        return {"step": step, "lora": get_peft_model_state_dict(self.model.transformer),
                "optimizer": self.optimizer.state_dict(), "generator": self.generator.get_state(),
                **({"lora_masters": self.masters.state()} if self.masters else {}), **losses}

    def _restore(self, state: dict) -> int:
        set_peft_model_state_dict(self.model.transformer, state["lora"])
        if self.masters:
            # a checkpoint written without masters (fp32 LoRA) carries the fp32 weights in "lora"
            self.masters.load_state(state.get("lora_masters") or [p.detach().float() for p in self.masters.params])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        return state["step"]

    def gpu_memory_peak(self) -> int:
        """The most memory torch allocated on this rank's GPU so far (0 on a CPU)."""
        return torch.cuda.max_memory_allocated(self.device) if self.device.type == "cuda" else 0

    def validation_loss(self) -> float:
        self.model.transformer.eval()
        return validation_loss(self.model.transformer, (self._prepare(s) for s in self.held_out), self.autocast)

    def backward(self, generator: torch.Generator) -> tuple[float, dict[str, float]]:
        """Draws one clip from the set and its noise, and adds its loss's gradients to the LoRA's."""
        index = int(torch.randint(len(self.samples), (1,), generator=generator))
        text, video, audio = self._prepare(self.samples[index])
        self.tokens_trained += video.tokens + audio.tokens
        noise = draw_noise(video, audio, generator)
        if hasattr(self.samples, "prefetch"):  # read the next step's sample while this one computes
            self.samples.prefetch(self._next_index())
        if not self.model.transformer.training:
            self.model.transformer.train()
        with self.autocast():
            loss, parts = diffusion_loss(self.model.transformer, text, video, audio, noise)
        loss.backward()
        return float(loss.detach()), parts

    def _next_index(self) -> int:
        """The sample the next step will draw: the shared generator has drawn this step's numbers
        (alone: this step's index and noise; with a world: this step's rank seed)."""
        peek = torch.Generator().set_state(self.generator.get_state())
        if self.world is not None:
            peek = self.world.step_generator(peek)
        return int(torch.randint(len(self.samples), (1,), generator=peek))

    def step(self, index: int) -> tuple[float, dict[str, float]]:
        """Optimisation step `index` (0-based) on one clip (per rank: the gradients averaged over the ranks)."""
        if self.world is None:
            loss, parts = self.backward(self.generator)
        else:
            loss, parts = self.backward(self.world.step_generator(self.generator))
            loss, parts = self.world.average(self.params, loss, parts)
        self.apply(index)
        return loss, parts

    def apply(self, index: int) -> None:
        """Clips the accumulated gradients and takes step `index` at its scheduled learning rate."""
        torch.nn.utils.clip_grad_norm_(self.params, GRAD_CLIP_NORM)
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(self.ctx.params.learning_rate, index, self.total)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def run(self) -> TrainingResult:
        ctx, store, job = self.ctx, self.ctx.store, self.ctx.job_id
        checkpoint_every, validation_every, preview_every = self.options.intervals(self.total)
        state = load_checkpoint(store, job)
        if state is not None:
            step, losses = self._restore(state), {k: state[k] for k in
                                                 ("validation_loss", "baseline_validation_loss")}
            ctx.log(f"resumed from the checkpoint at step {step}")
        else:
            step, baseline = 0, self.validation_loss()
            losses = {"validation_loss": baseline, "baseline_validation_loss": baseline}
            ctx.log(f"untrained validation loss {baseline:.4f}")
        started, first_step, self.tokens_trained = time.monotonic(), step, 0
        ranks = self.world.size if self.world else 1
        while step < self.total:
            if ctx.cancelled():
                raise JobCancelled()
            loss, parts = self.step(step)
            step += 1
            status.update(step)
            if step % validation_every == 0 or step == self.total:
                losses["validation_loss"] = self.validation_loss()
            if self.leader and (step % checkpoint_every == 0 or step == self.total):
                save_checkpoint(store, job, self._state(step, losses))
            elapsed = max(time.monotonic() - started, 1e-9)
            rate = (step - first_step) / elapsed
            ctx.progress(step, self.total, "steps", loss=loss, rate=rate, eta_seconds=(self.total - step) / rate,
                         tokens_per_second=self.tokens_trained * ranks / elapsed,  # rank 0's clips stand for all
                         gpu_memory_peak_bytes=self.gpu_memory_peak(), validation_loss_on=self.validation_loss_on,
                         **parts, **losses)
            if self.leader and self.on_preview and step % preview_every == 0 and step < self.total:
                self.on_preview(step)
        if self.masters:
            self.masters.finish()
        return TrainingResult(step, losses["validation_loss"], losses["baseline_validation_loss"],
                              self.validation_loss_on)
