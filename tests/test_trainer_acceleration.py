"""The trainer's speed switches on the tiny model (CPU): regional compilation gives the losses of
eager mode, the checkpointing budget picks the right number of blocks and exactly those blocks
are recomputed (or offloaded), LoRA weights computing in bf16 (fp32 masters) learn as fp32 ones
do, and fp8 base weights learn within noise of the original weights."""

import torch

from avlora.model.components import load_for_training
from avlora.model.encode import TextProjection, audio_latent_count
from avlora.modes import MODES
from services.trainer import acceleration, fp8
from services.trainer.data import Prompt, Sample
from services.trainer.losses import diffusion_loss, draw_noise
from services.trainer.strategies import Strategy
from services.trainer.tokens import encode_text
from services.trainer.training import add_lora

GIB = 2**30


def _setup(model_dir, mode="v2a", frames=17, size=(128, 96)):
    """The tiny model with a LoRA, one random-latent sample's streams and text."""
    model = load_for_training(model_dir)
    strategy = Strategy(MODES[mode])
    params = add_lora(model.transformer, strategy, rank=8, seed=0)
    gen = torch.Generator().manual_seed(7)
    grid = ((frames - 1) // 8 + 1, size[1] // 32, size[0] // 32)
    audio = audio_latent_count(frames, 24)
    mask = torch.ones(32, dtype=torch.int64)
    features = TextProjection(model.connectors)(torch.randn(1, 32, 96, generator=gen), mask[None])
    sample = Sample("s", Prompt(features[0][0], features[1][0], mask),
                    torch.randn(1, 128, *grid, generator=gen), torch.randn(1, 8, audio, 16, generator=gen),
                    torch.randn(1, 128, *grid, generator=gen), torch.randn(1, 8, audio, 16, generator=gen))
    text = encode_text(model.connectors, sample.prompt)
    video, audio_stream = strategy.streams(model.transformer, sample, 24)
    return model, params, text, video, audio_stream


def _train(model, params, text, video, audio, steps, autocast=None, masters=None, lr=1e-3, noise_seed=3):
    optimizer = torch.optim.AdamW(masters.masters if masters else params, lr=lr)
    if masters:
        masters.attach(optimizer)
    gen = torch.Generator().manual_seed(noise_seed)
    losses = []
    model.transformer.train()
    for _ in range(steps):
        noise = draw_noise(video, audio, gen)
        with autocast() if autocast else torch.autocast("cpu", enabled=False):
            loss, _ = diffusion_loss(model.transformer, text, video, audio, noise)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(masters.masters if masters else params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    return losses


def test_compiled_blocks_give_the_eager_losses(tiny_model_dir):
    eager = _train(*_setup(tiny_model_dir), steps=2)
    model, *rest = _setup(tiny_model_dir)
    # aot_eager: the same graph capture, AOTAutograd and one compiled code for all blocks as the
    # trainer's inductor on CUDA, without inductor's C++ builds (minutes on a 2-core CPU).
    acceleration.compile_blocks(model.transformer, backend="aot_eager")
    compiled = _train(model, *rest, steps=2)
    assert all(torch.isclose(torch.tensor(a), torch.tensor(b), rtol=1e-4) for a, b in zip(eager, compiled)), \
        (eager, compiled)
    # The validation loss path (no grad, eval) goes through the same compiled blocks.
    with torch.no_grad():
        model.transformer.eval()
        noise = draw_noise(rest[2], rest[3], torch.Generator().manual_seed(1), (0.5, 0.5))
        assert torch.isfinite(diffusion_loss(model.transformer, rest[1], rest[2], rest[3], noise)[0])
    assert all(block._compiled_call_impl is not None for block in model.transformer.transformer_blocks)


def test_each_new_model_runs_its_blocks_compiled(tiny_model_dir):
    """A trainer worker trains job after job in one process, each job on a freshly loaded model
    with its own LoRA: the blocks of every model, not only the first, run through compiled code
    (on an H100, a second mode in one process once ran eagerly, 5.7 s a step instead of ~3.7)."""
    from torch._dynamo.utils import counters
    for mode in ("v2a", "av2av"):
        model, *rest = _setup(tiny_model_dir, mode=mode)
        acceleration.compile_blocks(model.transformer, backend="aot_eager")
        compiled_before = counters["frames"]["ok"]
        _train(model, *rest, steps=1)
        assert counters["frames"]["ok"] > compiled_before, f"the {mode} model's blocks ran uncompiled"


def test_budget_leaves_as_many_blocks_unchecked_as_fit():
    # 48 blocks, 1.3 GiB of activations per un-checkpointed block (v2a on an H100, gpu.md), the free
    # memory less a 4 GiB margin to spare.
    assert acceleration.unchecked_block_count(48, int(1.3 * GIB), 30 * GIB - 4 * GIB) == 20  # 26 / 1.3
    assert acceleration.unchecked_block_count(48, int(4.8 * GIB), 30 * GIB - 4 * GIB) == 5   # av2av
    assert acceleration.unchecked_block_count(48, int(1.3 * GIB), 3 * GIB - 4 * GIB) == 0    # margin eats it
    assert acceleration.unchecked_block_count(48, int(1.3 * GIB), 100 * GIB - 4 * GIB) == 48  # everything fits
    assert acceleration.unchecked_block_count(48, 0, 5 * GIB - 4 * GIB) == 48


def _simulated_device(base_gib: float, first_two_gib: float, per_block_gib: float, capacity_gib: float):
    """A step's peak on a simulated GPU: the first two un-checkpointed blocks cost `first_two_gib`
    each (cheaper, as the v2a blocks whose inputs need no gradient), the others `per_block_gib`;
    a step whose peak passes the capacity runs out of memory (None)."""
    def measure(n: int) -> int | None:
        peak = base_gib + first_two_gib * min(n, 2) + per_block_gib * max(0, n - 2)
        return None if peak > capacity_gib else int(peak * GIB)
    return measure


def test_budget_checks_its_estimate_with_a_real_step_and_corrects_it():
    # The two-block probe sees 0.5 GiB per block, the real cost is 1.1: the first estimate
    # (n = 34) would run out of memory on the device; the checked choice fits under the limit.
    measure = _simulated_device(base_gib=3, first_two_gib=0.5, per_block_gib=1.1, capacity_gib=30)
    unchecked, measured = acceleration.fit_unchecked_blocks(48, measure, limit_bytes=int(20 * GIB))
    assert [n for n, _ in measured[:2]] == [0, 2]
    assert measured[2] == (34, None)  # the uncorrected estimate: out of memory
    assert unchecked == 16            # 3 + 2 x 0.5 + 14 x 1.1 = 19.4 GiB <= 20; 17 blocks would be 20.5
    assert measure(unchecked) <= 20 * GIB < measure(unchecked + 1)
    # Everything fits: no correction needed, and every block runs without checkpointing.
    measure = _simulated_device(base_gib=3, first_two_gib=1, per_block_gib=1, capacity_gib=80)
    assert acceleration.fit_unchecked_blocks(48, measure, limit_bytes=int(60 * GIB))[0] == 48
    # Not even the checkpointed step fits the limit: nothing is left un-checkpointed.
    measure = _simulated_device(base_gib=30, first_two_gib=1, per_block_gib=1, capacity_gib=80)
    assert acceleration.fit_unchecked_blocks(48, measure, limit_bytes=int(20 * GIB)) == (0, [(0, 30 * GIB)])


def _forward_calls(model, text, video, audio):
    """How many times each block's forward started during one forward and backward (pre-hooks:
    a recomputation stops early, once it has what the backward needs)."""
    calls = [0] * len(model.transformer.transformer_blocks)
    handles = [block.register_forward_pre_hook(lambda *_, i=i: calls.__setitem__(i, calls[i] + 1))
               for i, block in enumerate(model.transformer.transformer_blocks)]
    noise = draw_noise(video, audio, torch.Generator().manual_seed(0))
    diffusion_loss(model.transformer, text, video, audio, noise)[0].backward()
    for handle in handles:
        handle.remove()
    return calls


def test_checkpointed_blocks_are_recomputed_and_the_others_are_not(tiny_model_dir):
    model, params, text, video, audio = _setup(tiny_model_dir)
    model.transformer.train()
    blocks = len(model.transformer.transformer_blocks)
    unchecked = acceleration.unchecked_block_count(blocks, 10 * 2**20, 15 * 2**20)
    assert unchecked == 1
    acceleration.set_checkpointing(model.transformer, unchecked)
    assert _forward_calls(model, text, video, audio) == [1] + [2] * (blocks - 1)
    eager_grads = [p.grad.clone() for p in params]
    acceleration.set_checkpointing(model.transformer, 0)
    for p in params:
        p.grad = None
    assert _forward_calls(model, text, video, audio) == [2] * blocks
    assert all(torch.allclose(a, p.grad, atol=1e-6) for a, p in zip(eager_grads, params))
    acceleration.set_checkpointing(model.transformer, blocks)
    assert _forward_calls(model, text, video, audio) == [1] * blocks


def test_offloaded_blocks_are_not_recomputed_and_give_the_same_gradients(tiny_model_dir):
    """An offloaded block keeps its saved activations in (pinned) host memory instead of running its
    forward again in the backward, a checkpointed one runs it again; eager and compiled blocks give
    the gradients of blocks that keep everything."""
    model, params, text, video, audio = _setup(tiny_model_dir)
    model.transformer.train()
    blocks = len(model.transformer.transformer_blocks)
    acceleration.set_checkpointing(model.transformer, blocks)
    _forward_calls(model, text, video, audio)
    kept = [p.grad.clone() for p in params]
    acceleration.set_checkpointing(model.transformer, 0, offloaded=1)
    for p in params:
        p.grad = None
    assert _forward_calls(model, text, video, audio) == [1] + [2] * (blocks - 1)
    assert all(torch.allclose(a, p.grad, atol=1e-6) for a, p in zip(kept, params))
    acceleration.set_checkpointing(model.transformer, 0, offloaded=blocks)
    acceleration.compile_blocks(model.transformer, backend="aot_eager")
    for p in params:
        p.grad = None
    diffusion_loss(model.transformer, text, video, audio, draw_noise(video, audio, torch.Generator().manual_seed(0)))[0].backward()
    assert all(torch.allclose(a, p.grad, atol=1e-5) for a, p in zip(kept, params))


def test_offload_copies_activations_with_their_strides_and_leaves_the_weights(tiny_model_dir):
    model, params, text, video, audio = _setup(tiny_model_dir)
    weight = model.transformer.transformer_blocks[0].ff.net[2].weight
    offload = acceleration.HostOffload({weight.untyped_storage().data_ptr()})
    device, kept = offload.pack(weight)
    assert device is None and kept is weight  # a weight is not copied
    activation = torch.randn(4, 6, 8).transpose(1, 2)[:, :, 1:5]  # a strided view
    device, host = offload.pack(activation)
    assert device == activation.device and host is not activation
    assert host.untyped_storage().data_ptr() != activation.untyped_storage().data_ptr()
    assert host.stride() == activation.stride() and torch.equal(host, activation)
    restored = offload.unpack((device, host))
    assert restored.stride() == activation.stride() and torch.equal(restored, activation)
    expanded = torch.randn(1, 8).expand(4, 8)
    assert offload.pack(expanded)[1] is expanded
    assert offload.pack(activation)[1] is host  # saved again unchanged: the same copy
    activation.mul_(2)
    again = offload.pack(activation)[1]
    assert again is not host and torch.equal(again, activation)  # changed in place: a new copy
    with offload.hooks():
        assert offload.pack(activation)[1] is not again  # a new block call: its own copies


def test_offload_takes_as_many_blocks_as_fit_in_half_the_host_memory():
    assert acceleration.offloadable_block_count(18, 2 * GIB, 100 * GIB) == 18
    assert acceleration.offloadable_block_count(18, 2 * GIB, 40 * GIB) == 10
    assert acceleration.offloadable_block_count(18, 2 * GIB, 3 * GIB) == 0
    assert acceleration.available_host_bytes() > 0


def test_bf16_lora_with_fp32_masters_learns_as_fp32_lora(tiny_model_dir):
    """100 steps under bf16 autocast: the loss curve with bf16 LoRA weights (fp32 masters) stays
    within noise of today's (fp32 LoRA weights cast at each use)."""
    autocast = lambda: torch.autocast("cpu", dtype=torch.bfloat16)  # noqa: E731
    small = dict(mode="av2av", frames=9, size=(64, 64))  # 8 + 8 video tokens: seconds, not minutes
    today = _train(*_setup(tiny_model_dir, **small), steps=100, autocast=autocast)
    model, params, *rest = _setup(tiny_model_dir, **small)
    masters = acceleration.LoraMasterWeights(params, torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 for p in params) and all(m.dtype == torch.float32 for m in masters.masters)
    faster = _train(model, params, *rest, steps=100, autocast=autocast, masters=masters)
    assert masters.masters[0].sub(params[0].float()).abs().max().item() < 1e-2
    today, faster = torch.tensor(today), torch.tensor(faster)
    # Both learn: the mean of the last 20 steps is below that of the first 20.
    assert today[-20:].mean() < today[:20].mean() and faster[-20:].mean() < faster[:20].mean()
    # Within noise: the curves' 20-step means differ by less than the step-to-step spread.
    spread = today[-20:].std()
    for window in range(0, 100, 20):
        assert abs(today[window:window + 20].mean() - faster[window:window + 20].mean()) < spread, (today, faster)


def test_fp32_masters_survive_a_checkpoint_and_are_what_is_written_out():
    """A resumed job continues from the fp32 masters (not their bf16 rounding), and the LoRA files
    get the fp32 weights."""
    params = [torch.nn.Parameter(torch.randn(4, 8)), torch.nn.Parameter(torch.randn(8, 4))]
    masters = acceleration.LoraMasterWeights(params, torch.bfloat16)
    with torch.no_grad():
        for master in masters.masters:
            master.add_(1e-4)  # a step too small for bf16 to see
    saved = masters.state()
    assert not all(torch.equal(p, p.to(torch.bfloat16).float()) for p in saved)
    fresh_params = [torch.nn.Parameter(p.detach().clone().float()) for p in params]
    resumed = acceleration.LoraMasterWeights(fresh_params, torch.bfloat16)
    resumed.load_state(saved)
    assert all(torch.equal(m, s) for m, s in zip(resumed.masters, saved))
    assert all(p.dtype == torch.bfloat16 for p in fresh_params)
    resumed.finish()
    assert all(p.dtype == torch.float32 and torch.equal(p, s) for p, s in zip(fresh_params, saved))


def test_an_fp8_linear_computes_the_linear_within_fp8_rounding():
    torch.manual_seed(0)
    linear = torch.nn.Linear(256, 128).requires_grad_(False)
    quantized = fp8.Fp8Linear(linear)
    assert quantized.weight.dtype == torch.float8_e4m3fn and quantized.weight.shape == (128, 256)
    x = torch.randn(4, 10, 256, requires_grad=True)
    expected = linear(x)
    expected.sum().backward()
    expected_grad, x.grad = x.grad, None
    out = quantized(x)
    out.sum().backward()
    relative = lambda a, b: float((a - b).norm() / b.norm())  # noqa: E731
    assert out.shape == expected.shape and relative(out, expected) < 0.05  # e4m3: 3 mantissa bits
    assert relative(x.grad, expected_grad) < 0.03  # the weight's rounding only: it uses the dequantised weight


def test_fp8_weights_learn_as_the_original_weights_do(tiny_model_dir):
    """100 steps on the tiny model, both modes: the mean loss of the last 20 steps with fp8 base
    weights stays within a quarter of how much that mean moves between noise seeds (measured on
    2026-11-23: the drift is 0.0006-0.0010, the seeds' spread 0.010 in v2a and 0.013 in av2av)."""
    def last_losses(mode: str, use_fp8: bool, seed: int) -> float:
        model, *rest = _setup(tiny_model_dir, mode=mode)
        if use_fp8:
            assert fp8.use_fp8_weights(model.transformer) > 0
        return sum(_train(model, *rest, steps=100, noise_seed=seed)[-20:]) / 20

    for mode in ("v2a", "av2av"):
        base = {seed: last_losses(mode, False, seed) for seed in (3, 4, 5)}
        spread = max(base.values()) - min(base.values())
        drift = abs(last_losses(mode, True, 3) - base[3])
        assert 0 < drift < spread / 4, (mode, drift, spread)


def test_fp8_blocks_compile_whole_and_give_the_eager_losses(tiny_model_dir):
    """The quantisation of activations only pays when compiled code fuses it: the fp8 matmul must
    not break a block's graph."""
    from torch._dynamo.utils import counters
    model, *rest = _setup(tiny_model_dir)
    fp8.use_fp8_weights(model.transformer)
    eager = _train(model, *rest, steps=2)
    model, *rest = _setup(tiny_model_dir)
    fp8.use_fp8_weights(model.transformer)
    acceleration.compile_blocks(model.transformer, backend="aot_eager")
    counters.clear()
    compiled = _train(model, *rest, steps=2)
    assert counters["frames"]["ok"] > 0 and not counters["graph_break"], dict(counters["graph_break"])
    assert all(torch.isclose(torch.tensor(a), torch.tensor(b), rtol=1e-4) for a, b in zip(eager, compiled))
