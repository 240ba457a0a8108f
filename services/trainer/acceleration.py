"""The trainer's speed switches, apart from what is learned:

- regional compilation: every transformer block `torch.compile`d in place with one shared code
  object, so the compiled graph is made once and reused by all blocks (training, validation loss
  and preview sampling all go through the blocks);
- gradient checkpointing chosen by a memory budget: probe steps measure the peak with every block
  checkpointed and with two blocks not, the estimate of how many blocks fit in the free memory
  (less a safety margin) is checked with a real step and corrected, and that many blocks run
  without checkpointing;
- optionally, blocks past the budget keep their saved activations in pinned host memory instead
  of being recomputed (saved-tensor hooks): PCIe copies in place of a second forward, as many as
  fit in half the host's available memory;
- LoRA weights computing in the compute dtype (bf16 on a GPU) with fp32 master copies that the
  optimizer updates: peft casts a layer's input to its LoRA weights' dtype, so fp32 LoRA weights
  under bf16 autocast cost two casts of every adapted activation per use.
"""

import math
import weakref
from pathlib import Path
from typing import Callable

import torch
import torch.utils.checkpoint

GIB = 2**30
# Training, validation, sampling and the STG block each compile their own variant of the block
# (grad mode, train/eval, shapes); the variants are shared by all blocks.
RECOMPILE_LIMIT = 64


def compile_blocks(transformer, backend: str = "inductor") -> None:
    """Compiles each transformer block in place (static shapes); all blocks share the compiled code.
    Compiled variants from earlier models are dropped first: a worker training job after job (each
    with its own model and LoRA) would otherwise pile up variants until torch's recompile limit
    silently runs the blocks eagerly."""
    torch._dynamo.reset()
    config = torch._dynamo.config
    name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    setattr(config, name, max(getattr(config, name), RECOMPILE_LIMIT))
    for block in transformer.transformer_blocks:
        block.compile(backend=backend, dynamic=False)


def unchecked_block_count(blocks: int, per_block_bytes: int, spare_bytes: int) -> int:
    """How many blocks can skip checkpointing: those whose saved activations (per_block_bytes each,
    at least 1) fit in spare_bytes."""
    return max(0, min(blocks, spare_bytes // max(1, per_block_bytes)))


class HostOffload:
    """Saved-tensor hooks that keep a block's activations in host memory (pinned when they come
    from a GPU) until the backward needs them. Model weights (`resident`: the storages of the
    model's parameters and buffers) and expanded tensors (a stride 0) are not copied: they stay
    where they are. The same tensor saved again unchanged within one block call (the input of q,
    k and v with their LoRAs) is copied once. Strides are kept: compiled backward code views its
    saved tensors by their strides (torch's save_on_cpu makes them contiguous, which breaks it). The
    copies run on the compute stream."""

    def __init__(self, resident: set[int]):
        self.resident = resident
        self.copies: dict[int, tuple] = {}  # this block call's copies: id -> (weak tensor, version, copy)

    def hooks(self):
        """The saved-tensor hooks of one block call (its copies shared within it only)."""
        self.copies = {}
        return torch.autograd.graph.saved_tensors_hooks(self.pack, self.unpack)

    def pack(self, tensor: torch.Tensor) -> tuple[torch.device | None, torch.Tensor]:
        storage = tensor.untyped_storage().data_ptr()
        if storage in self.resident or any(stride == 0 and size > 1 for size, stride in zip(tensor.shape, tensor.stride())):
            return None, tensor
        known = self.copies.get(id(tensor))  # the same tensor object, still alive and unchanged
        if known is not None and known[0]() is tensor and known[1] == tensor._version:
            return tensor.device, known[2]
        host = torch.empty_strided(tensor.shape, tensor.stride(), dtype=tensor.dtype, pin_memory=tensor.is_cuda)
        host.copy_(tensor, non_blocking=tensor.is_cuda)
        self.copies[id(tensor)] = (weakref.ref(tensor), tensor._version, host)
        return tensor.device, host

    @staticmethod
    def unpack(packed: tuple[torch.device | None, torch.Tensor]) -> torch.Tensor:
        device, host = packed
        if device is None:
            return host
        return torch.empty_strided(host.shape, host.stride(), dtype=host.dtype, device=device).copy_(
            host, non_blocking=host.is_pinned())


def set_checkpointing(transformer, unchecked: int, offloaded: int = 0) -> None:
    """The first `unchecked` blocks keep their activations on the device, the next `offloaded` keep
    them in pinned host memory, and the others are checkpointed (run again in the backward)."""
    blocks = transformer.transformer_blocks
    unchecked = max(0, min(len(blocks), unchecked))
    offloaded = max(0, min(len(blocks) - unchecked, offloaded))
    if unchecked == len(blocks):
        transformer.disable_gradient_checkpointing()
        return
    free = {id(block) for block in blocks[:unchecked]}
    to_host = {id(block) for block in blocks[unchecked:unchecked + offloaded]}
    offload = HostOffload({t.untyped_storage().data_ptr() for t in (*transformer.parameters(), *transformer.buffers())}
                          ) if offloaded else None

    def checkpoint_or_run(block, *args):
        if id(block) in free:
            return block(*args)
        if id(block) in to_host:
            with offload.hooks():
                return block(*args)
        return torch.utils.checkpoint.checkpoint(block.__call__, *args, use_reentrant=False)

    transformer.enable_gradient_checkpointing(gradient_checkpointing_func=checkpoint_or_run)


def available_host_bytes() -> int:
    """The host memory this process may still use: the kernel's MemAvailable, or less where a
    cgroup (a container's memory limit) allows less."""
    available = 0
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text())
    except (OSError, ValueError):
        return available
    return available if limit == "max" else min(available, max(0, int(limit) - used))


def offloadable_block_count(blocks: int, per_block_bytes: int, host_bytes: int) -> int:
    """How many of `blocks` checkpointed blocks can keep their activations (per_block_bytes each)
    in host memory instead: those that fit in half of `host_bytes`."""
    return unchecked_block_count(blocks, per_block_bytes, host_bytes // 2)


def fit_unchecked_blocks(blocks: int, measure: Callable[[int], int | None], limit_bytes: int,
                         attempts: int = 4) -> tuple[int, list[tuple[int, int | None]]]:
    """How many blocks can skip checkpointing, found by measuring: `measure(n)` runs a step with n
    blocks un-checkpointed and returns its peak bytes (None when it ran out of memory). A first
    estimate from n = 0 and 2 is checked with a real step and corrected from what that step needed
    (a two-block probe can underestimate), until a step fits under `limit_bytes`; the largest n
    measured to fit wins. Returns (n, the (n, peak) measurements)."""
    measured: list[tuple[int, int | None]] = []

    def run(n: int) -> int | None:
        peak = measure(n)
        measured.append((n, peak))
        return peak

    base = run(0)
    if base is None or base > limit_bytes or blocks == 0:
        return 0, measured
    probe = min(2, blocks)
    peak = run(probe)
    if peak is None or peak > limit_bytes:
        return 0, measured
    fits = probe
    per_block = max(1, (peak - base) // probe)
    for _ in range(attempts):
        n = unchecked_block_count(blocks, per_block, limit_bytes - base)
        if n <= fits:
            break
        peak = run(n)
        if peak is not None and peak <= limit_bytes:
            fits = n
            if n == blocks:
                break
            per_block = max(1, (peak - base) // n)
        elif peak is None:  # out of memory: assume twice the cost per block
            per_block *= 2
        else:  # over the limit: the next estimate comes from this step's own need
            per_block = max(per_block + 1, math.ceil((peak - base) / n))
    return fits, measured


def step_peak_bytes(transformer, run_step: Callable[[], None], device: torch.device, unchecked: int,
                    baseline: int) -> int | None:
    """Peak bytes above `baseline` of one `run_step` with `unchecked` blocks un-checkpointed; None
    when it ran out of memory (run_step clears its gradients either way)."""
    set_checkpointing(transformer, unchecked)
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    try:
        run_step()
    except torch.OutOfMemoryError:
        torch.cuda.empty_cache()
        return None
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - baseline


def free_device_bytes(device: torch.device) -> int:
    """Bytes this process can still allocate: the device's free memory plus what torch's caching
    allocator holds unused."""
    free, _ = torch.cuda.mem_get_info(device)
    return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)


def checkpoint_by_budget(transformer, run_step: Callable[[], None], device: torch.device,
                         margin_gib: float, optimizer_bytes: int = 0,
                         report: Callable[[str], None] = lambda line: None, offload: bool = False) -> int:
    """Measures, chooses and applies the number of un-checkpointed blocks; returns it. `run_step`
    is one forward and backward that leaves no gradients behind, even when it fails. With
    `offload`, as many of the other blocks as fit in half the host's available memory keep their
    activations there instead of being checkpointed."""
    report("gradient checkpointing: measuring GPU memory with a few training steps")
    torch.cuda.synchronize(device)
    baseline = torch.cuda.memory_allocated(device)
    limit = free_device_bytes(device) - optimizer_bytes - int(margin_gib * GIB)
    blocks = len(transformer.transformer_blocks)
    unchecked, measured = fit_unchecked_blocks(
        blocks, lambda n: step_peak_bytes(transformer, run_step, device, n, baseline), limit)
    offloaded, host = 0, ""
    if offload:
        base = measured[0][1] or 0
        per_block = max([(peak - base) // n for n, peak in measured if n and peak is not None], default=0)
        available = available_host_bytes()
        offloaded = offloadable_block_count(blocks - unchecked, per_block, available) if per_block else 0
        host = (f"; {offloaded} of the other {blocks - unchecked} keep theirs in host memory "
                f"({offloaded * per_block / GIB:.1f} GiB of {available / GIB:.0f} GiB available)")
    set_checkpointing(transformer, unchecked, offloaded)
    steps = ", ".join(f"{n}: {'out of memory' if peak is None else f'{peak / GIB:.1f} GiB'}" for n, peak in measured)
    report(f"gradient checkpointing: {unchecked} of {blocks} blocks without, to stay under "
           f"{limit / GIB:.1f} GiB of activations (measured steps by blocks without: {steps}){host}")
    return unchecked


def choose_checkpointing(transformer, setting: str, run_step: Callable[[], None], device: torch.device,
                         margin_gib: float, optimizer_bytes: int = 0,
                         report: Callable[[str], None] = lambda line: None, offload: bool = False) -> int:
    """Applies a checkpointing setting ("budget", "all", "none" or the number of blocks left
    un-checkpointed), reports the choice and returns the number of un-checkpointed blocks. With
    `offload`, the other blocks keep their activations in host memory instead of being recomputed:
    under "budget" as many as fit in half the host's available memory, otherwise all of them."""
    if setting == "budget":
        return checkpoint_by_budget(transformer, run_step, device, margin_gib, optimizer_bytes, report, offload)
    blocks = len(transformer.transformer_blocks)
    unchecked = {"all": 0, "none": blocks}.get(setting)
    unchecked = min(blocks, int(setting)) if unchecked is None else unchecked
    set_checkpointing(transformer, unchecked, blocks if offload else 0)
    report(f"gradient checkpointing: {unchecked} of {blocks} blocks without (setting {setting!r})"
           + (f"; the other {blocks - unchecked} keep their activations in host memory" if offload else ""))
    return unchecked


class LoraMasterWeights:
    """LoRA parameters stored in `dtype` for the forward, with fp32 master copies: gradients land
    in the masters (in fp32) as soon as they are accumulated, the optimizer steps the masters, and
    after each step the masters are copied back into the parameters."""

    def __init__(self, params: list[torch.nn.Parameter], dtype: torch.dtype):
        self.params = params
        self.masters = [torch.nn.Parameter(p.detach().float().clone()) for p in params]
        for param, master in zip(params, self.masters):
            param.data = param.data.to(dtype)
            param.register_post_accumulate_grad_hook(self._move_grad(master))

    @staticmethod
    def _move_grad(master: torch.nn.Parameter):
        def hook(param: torch.Tensor) -> None:
            grad = param.grad.float()
            master.grad = grad if master.grad is None else master.grad + grad
            param.grad = None
        return hook

    def attach(self, optimizer: torch.optim.Optimizer) -> None:
        optimizer.register_step_post_hook(lambda *_: self.masters_to_params())

    @torch.no_grad()
    def masters_to_params(self) -> None:
        for param, master in zip(self.params, self.masters):
            param.copy_(master)

    def state(self) -> list[torch.Tensor]:
        """The fp32 masters, for a checkpoint (the parameters hold them rounded to the forward dtype)."""
        return [master.detach().clone() for master in self.masters]

    @torch.no_grad()
    def load_state(self, masters: list[torch.Tensor]) -> None:
        for master, saved in zip(self.masters, masters, strict=True):
            master.copy_(saved)
        self.masters_to_params()

    @torch.no_grad()
    def finish(self) -> None:
        """The parameters become the fp32 masters, so what is written out is what was learned."""
        for param, master in zip(self.params, self.masters):
            param.data = master.detach().clone()


def lora_bytes(params: list[torch.nn.Parameter]) -> int:
    """What a training step holds beyond the probe's forward and backward for fp32 LoRA masters:
    AdamW's two fp32 moments, the fp32 gradients and one fp32 temporary of the fused update."""
    return 4 * 4 * sum(math.prod(p.shape) for p in params)
