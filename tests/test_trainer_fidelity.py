"""The trainer against Lightricks' LTX-2 reference code (ltx-trainer, ltx-core, ltx-pipelines at
400fd310) and diffusers 0.42.1: the expected values below are derived from their code by hand
(timestep sampler, IC-LoRA reference positions, LoRA metadata, validation guidance, optimiser)."""

import gc
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from trainer_sets import TrainerRun, make_params, trainer_environment

from avlora.modes import MODES
from avlora.model.components import load_encoders, load_for_training, model_identity
from avlora.model.encode import TEXT_LENGTH, encode_prompts, text_length
from services.trainer.data import Prompt, Sample, load_sample, load_training_set
from services.trainer.lora_files import (
    lora_metadata, lora_weights, read_lora_metadata, write_comfyui_lora, write_diffusers_lora,
)
from services.trainer.sampling import euler_sigmas, generate, guided, stg_block
from services.trainer.strategies import Guidance, Strategy, strategy_for
from services.trainer.tokens import encode_text, perturbed_self_attention, predict, sample_sigmas, video_coords
from services.trainer.training import Trainer, TrainerOptions, add_lora, learning_rate, optimiser_config


# -- 1. timestep sampling (ltx-trainer ShiftedLogitNormalTimestepSampler) ---------------------------

@pytest.mark.parametrize("tokens, expected", [
    # P(sigma < t) for t = 0.1, 0.5, 0.9, from the sampler's closed-form CDF:
    # 0.9 [G(t) - G(0.002 - t)] + 0.1 (t - 0.001) / 0.999, G(z) = Phi(logit(p_lo + z (p_hi - p_lo)) - mu).
    (6912, (0.014216, 0.096876, 0.582065)),  # 768x768x97 video
    (93, (0.032938, 0.354524, 0.927756)),    # the audio of 89 frames at 24 fps
])
def test_sigmas_follow_lightricks_shifted_logit_normal(tokens, expected):
    sigmas = sample_sigmas(tokens, 1_000_000, torch.Generator().manual_seed(0))
    for t, probability in zip((0.1, 0.5, 0.9), expected):
        assert float((sigmas < t).double().mean()) == pytest.approx(probability, abs=0.002)
    # Reflected at eps = 1e-3 and clamped at 1: the 0.1 % above the 99.9th percentile, times 0.9, are 1.0.
    assert float(sigmas.min()) >= 1e-3 and float(sigmas.max()) == 1.0
    assert float((sigmas == 1.0).double().mean()) == pytest.approx(0.0009, abs=0.0002)


# -- 2. text length (ltx-core TOKENIZER_MAX_LENGTH, diffusers max_sequence_length) -----------------

def test_prompts_pad_to_1024_tokens_whatever_the_tokenizer_says(tiny_model_dir, tmp_path):
    assert load_encoders(tiny_model_dir).text_length == 32  # the tiny model's own, from its tokenizer
    model_dir = Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))
    config_file = model_dir / "tokenizer" / "tokenizer_config.json"
    config = json.loads(config_file.read_text())
    config_file.write_text(json.dumps(config | {"model_max_length": 1e30}))  # a real Gemma 3 placeholder
    encoders = load_encoders(model_dir)
    assert encoders.tokenizer.model_max_length == 1e30 and encoders.text_length == TEXT_LENGTH == 1024
    assert TEXT_LENGTH % 128 == 0  # the real connectors' 128 registers
    embeds, mask = encode_prompts(encoders.text_encoder, encoders.tokenizer, ["a dog barks"], encoders.text_length)
    assert mask.shape == (1, 1024) and embeds.shape[1] == 1024 and int(mask.sum()) < 20
    assert mask[0, -1] == 1 and mask[0, 0] == 0  # left-padded
    connectors = load_for_training(model_dir).connectors
    video, audio, _ = connectors(embeds, mask, padding_side="left")
    assert video.shape[1] == audio.shape[1] == 1024
    encoders.tokenizer.model_max_length = 36
    with pytest.raises(ValueError, match="not a multiple of the connectors' 8 registers"):
        text_length(encoders.tokenizer, 8)


# -- 3. IC-LoRA reference positions (ltx-core VideoConditionByReferenceLatent) ---------------------

TARGET_TIMES = [(0, 1)] + [(8 * k - 7, 8 * k + 1) for k in range(1, 13)]  # 97 frames, x fps
REFERENCE_TIMES = {  # reference latent frame k >= 1 covers target frames [8S(k-1)+1, 8Sk+1)
    1: TARGET_TIMES,
    2: [(0, 1), (1, 17), (17, 33), (33, 49), (49, 65), (65, 81), (81, 97)],
    4: [(0, 1), (1, 33), (33, 65), (65, 97)],
}


@pytest.mark.parametrize("temporal", [1, 2, 4])
@pytest.mark.parametrize("spatial", [1, 2])
def test_reference_positions_match_lightricks(tiny_model_dir, temporal, spatial):
    transformer = load_for_training(tiny_model_dir).transformer
    ref_frames, side = len(REFERENCE_TIMES[temporal]), 4 // spatial
    strategy = Strategy(MODES["av2av"], reference_downscale_factor=spatial, reference_temporal_scale_factor=temporal)
    sample = Sample("s", None, torch.zeros(1, 128, 13, 4, 4), torch.zeros(1, 8, 101, 16),
                    torch.zeros(1, 128, ref_frames, side, side), torch.zeros(1, 8, 101, 16))
    assert strategy.target_shape(sample) == (13, 4, 4)  # what previews generate from the reference
    video, _ = strategy.streams(transformer, sample, 24)
    target, reference = video.coords[0, :, :video.count], video.coords[0, :, video.count:]
    per_frame = side * side
    times = [tuple(round(float(x) * 24, 4) for x in reference[0, k * per_frame]) for k in range(ref_frames)]
    assert times == [tuple(float(x) for x in pair) for pair in REFERENCE_TIMES[temporal]]
    assert [tuple(round(float(x) * 24, 4) for x in target[0, k * 16]) for k in range(13)] == \
        [tuple(float(x) for x in pair) for pair in TARGET_TIMES]
    # Spatially: reference cell (i, j) covers h [32Di, 32D(i+1)), w [32Dj, 32D(j+1)).
    assert reference[1:, 0].tolist() == [[0, 32 * spatial]] * 2
    assert reference[2, 1].tolist() == [32 * spatial, 64 * spatial]
    assert reference[1, side].tolist() == [32 * spatial, 64 * spatial]
    assert torch.equal(video_coords(transformer, (13, 4, 4), 24), video.coords[:, :, :video.count])


# -- 4. LoRA files ---------------------------------------------------------------------------------

@pytest.mark.parametrize("mode, spatial, temporal, reference_keys", [
    ("v2a", 1, 1, {}),
    ("av2av", 1, 1, {}),
    ("av2av", 2, 1, {"reference_spatial_scale_factor": "2", "reference_downscale_factor": "2"}),
    ("av2av", 1, 2, {"reference_temporal_scale_factor": "2"}),
])
def test_lora_files_carry_their_metadata(tiny_model_dir, tmp_path, mode, spatial, temporal, reference_keys):
    extra = {} if mode == "v2a" else {"reference_downscale_factor": spatial,
                                      "reference_temporal_scale_factor": temporal,
                                      "number_of_frames": 17, "validation_number_of_frames": 17}
    params = make_params(mode, trigger_phrase="bnc", **extra)
    strategy = strategy_for(params)
    transformer = load_for_training(tiny_model_dir).transformer
    add_lora(transformer, strategy, params.rank, seed=0)
    identity = model_identity(tiny_model_dir)
    metadata = lora_metadata(params, strategy, identity)
    expected = reference_keys | {"mode": mode, "rank": "8", "alpha": "8", "trigger_phrase": "bnc",
                                 "base_model": json.dumps(identity, sort_keys=True)}
    assert metadata == expected
    comfy = write_comfyui_lora(transformer, tmp_path / "comfy.safetensors", metadata)
    diffusers = write_diffusers_lora(transformer, tmp_path / "diffusers.safetensors", metadata)
    assert read_lora_metadata(comfy) == expected
    read = read_lora_metadata(diffusers)
    assert {k: read[k] for k in expected} == expected and "lora_adapter_metadata" in read
    assert json.loads(read["base_model"]) == identity
    weights, comfy_weights = lora_weights(transformer), load_file(comfy)
    assert all(v.dtype == torch.bfloat16 for v in comfy_weights.values())  # as Lightricks saves them
    assert all(torch.equal(comfy_weights[f"diffusion_model.{k}"], v.to(torch.bfloat16)) for k, v in weights.items())
    assert all(v.dtype == torch.float32 for v in load_file(diffusers).values())


# -- 5. preview sampling (ltx-core MultiModalGuider, validation_runner, LTX2Pipeline) ---------------

def test_preview_guidance_is_the_reference_validation_guidance():
    assert Strategy(MODES["v2a"]).guidance(1.0) == (Guidance(), Guidance(cfg=7.0, stg=1.0, modality=3.0, rescale=0.7))
    assert Strategy(MODES["av2av"]).guidance(1.0) == (Guidance(3.0, 1.0, 3.0, 0.7), Guidance(7.0, 1.0, 3.0, 0.7))
    # Lightricks' a2v_lora.yaml: video cfg 3, stg 1, modality 3, rescale 0.7; audio cfg 1, stg 0, modality 1
    assert Strategy(MODES["a2v"]).guidance(1.0) == (Guidance(3.0, 1.0, 3.0, 0.7), Guidance())
    generator = torch.Generator().manual_seed(0)
    c, u, p, m = (torch.randn(1, 40, 128, generator=generator) for _ in range(4))
    assert torch.equal(guided(c, None, None, None, Guidance()), c)  # the frozen modality's neutral guider
    # pred = c + (cfg - 1)(c - u) + stg (c - p) + (mod - 1)(c - m); pred *= 0.7 std(c) / std(pred) + 0.3
    pred = c + 6.0 * (c - u) + 1.0 * (c - p) + 2.0 * (c - m)
    expected = pred * (0.7 * float(c.std()) / float(pred.std()) + 0.3)
    assert torch.allclose(guided(c, u, p, m, Guidance(7.0, 1.0, 3.0, 0.7)), expected, atol=1e-5)


def test_guidance_rescale_measures_every_token_of_the_modality():
    # ltx-core MultiModalGuider.calculate: factor = std(cond) / std(pred) over the whole modality,
    # whose latent holds the clean reference tokens too (cond = pred = the reference there).
    c, u = torch.tensor([[[2.0], [4.0]]]), torch.tensor([[[1.0], [5.0]]])
    reference = torch.tensor([[[0.0], [0.0]]])
    # pred = c + 1 (c - u) = [3, 3]; over [3, 3, 0, 0]: std 1.732051; over [2, 4, 0, 0]: std 1.914854;
    # factor 0.5 x 1.914854 / 1.732051 + 0.5 = 1.052770, times [3, 3] = [3.158312, 3.158312].
    result = guided(c, u, None, None, Guidance(cfg=2.0, stg=0.0, modality=1.0, rescale=0.5), reference)
    assert result.flatten().tolist() == pytest.approx([3.158312, 3.158312], abs=1e-5)
    # the target tokens alone ([3, 3] has no spread): the factor would be inf
    assert not torch.isfinite(guided(c, u, None, None, Guidance(cfg=2.0, stg=0.0, modality=1.0, rescale=0.5))).all()


def test_preview_sigmas_are_shifted_for_4096_tokens_as_ltx_core(tiny_model_dir):
    # ltx-core LTX2Scheduler.execute(steps=4) without a latent: linspace(1, 0, 5) shifted with
    # mu = 2.05 (4096 tokens): e^mu / (e^mu + 1/t - 1), stretched so the last nonzero sigma is 0.1.
    scheduler = load_for_training(tiny_model_dir).scheduler
    assert euler_sigmas(scheduler, 4) == pytest.approx([1.0, 0.867083, 0.631569, 0.1, 0.0], abs=1e-5)


def _streams(tiny_model_dir):
    model = load_for_training(tiny_model_dir)
    sample = Sample("s", None, torch.randn(1, 128, 2, 2, 2), torch.randn(1, 8, 9, 16))
    video, audio = Strategy(MODES["v2a"]).streams(model.transformer, sample, 24)
    text = encode_text(model.connectors,
                       Prompt(torch.randn(5, 32), torch.randn(5, 16), torch.tensor([0] * 27 + [1] * 5)))
    return model, text, video, audio


def test_v2a_stg_perturbs_the_audio_self_attention_only(tiny_model_dir):
    model, text, video, audio = _streams(tiny_model_dir)
    transformer = model.transformer
    block = transformer.transformer_blocks[stg_block(transformer)]
    seen, noisy_audio = {}, torch.randn(audio.target.shape, generator=torch.Generator().manual_seed(1))
    hooks = [attn.register_forward_hook(lambda m, a, out, name=name: seen.__setitem__(name, out.clone()))
             for name, attn in (("video", block.attn1), ("audio", block.audio_attn1))]

    def run(**kwargs):
        with torch.no_grad():
            predict(transformer, text, video, audio, video.target, noisy_audio, 0.0, 0.5)
        return dict(seen)

    plain = run()
    with perturbed_self_attention(transformer, [stg_block(transformer)], video=False, audio=True):
        audio_only = run()
    assert torch.equal(audio_only["video"], plain["video"])  # the frozen video's self-attention untouched
    assert not torch.allclose(audio_only["audio"], plain["audio"], atol=1e-4)
    with perturbed_self_attention(transformer, [stg_block(transformer)], video=True, audio=True):
        both = run()  # what diffusers' spatio_temporal_guidance_blocks does: the video is perturbed too
    assert not torch.allclose(both["video"], plain["video"], atol=1e-4)
    assert torch.equal(both["audio"], audio_only["audio"])
    for hook in hooks:
        hook.remove()


def test_v2a_preview_steps_run_positive_cfg_stg_and_modality_passes(tiny_model_dir):
    model, text, _, _ = _streams(tiny_model_dir)
    calls, steps = [], []
    hook = model.transformer.register_forward_pre_hook(
        lambda m, a, kwargs: calls.append(kwargs["isolate_modalities"]), with_kwargs=True)
    conditioning = Sample("s", None, torch.randn(1, 128, 2, 2, 2))
    generation = generate(model, Strategy(MODES["v2a"]), conditioning, text, text, 24, (2, 2, 2), 9, 3, 1.0,
                          torch.Generator().manual_seed(0), torch.no_grad, on_step=lambda d, t: steps.append((d, t)))
    hook.remove()
    assert calls == [False, False, False, True] * 3 and steps == [(1, 3), (2, 3), (3, 3)]
    assert torch.equal(generation.video, conditioning.video) and torch.isfinite(generation.audio).all()


# -- 5b. audio<->video cross-attention modulation (ltx-core _prepare_cross_attention_timestep) -------
# ltx-core: scale/shift <- the modality's own timesteps x 1000 (per token); gate <- the other
# modality's sigma x 1000 x av_ca_timestep_scale_multiplier / 1000. With the multiplier at 1 (ltx-core's
# default): gate <- the other's sigma itself.

CROSS_MODULES = ("av_cross_attn_video_scale_shift", "av_cross_attn_audio_scale_shift",
                 "av_cross_attn_video_a2v_gate", "av_cross_attn_audio_v2a_gate")


def _modulation_inputs(transformer, run) -> dict[str, list[float]]:
    """What the four cross-attention AdaLN modules receive as their timestep during `run()`."""
    seen = {}
    hooks = [getattr(transformer, name).register_forward_hook(  # sees the input as the module ran on it
        lambda m, args, out, name=name: seen.__setitem__(name, [round(float(x), 4) for x in args[0]]))
        for name in CROSS_MODULES]
    with torch.no_grad():
        run()
    for hook in hooks:
        hook.remove()
    return seen


def _transformer_with_multiplier(tiny_model_dir, multiplier: int):
    transformer = load_for_training(tiny_model_dir).transformer
    return type(transformer).from_config({**transformer.config, "cross_attn_timestep_scale_multiplier": multiplier})


def test_v2a_cross_attention_modulated_as_ltx_core(tiny_model_dir):
    model, text, video, audio = _streams(tiny_model_dir)
    transformer = _transformer_with_multiplier(tiny_model_dir, 1)
    noisy = torch.randn(audio.target.shape)
    seen = _modulation_inputs(transformer, lambda: predict(transformer, text, video, audio, video.target, noisy,
                                                           0.0, 0.6))
    assert seen == {"av_cross_attn_video_scale_shift": [0.0],    # the video's own timestep (clean)
                    "av_cross_attn_audio_scale_shift": [600.0],  # the audio's own timestep
                    "av_cross_attn_video_a2v_gate": [0.6],       # the audio's sigma x 1000 x 1 / 1000
                    "av_cross_attn_audio_v2a_gate": [0.0]}       # the video's sigma
    # At the tiny model's multiplier 1000 (diffusers' default) the gate is the other's sigma x 1000.
    seen = _modulation_inputs(model.transformer, lambda: predict(model.transformer, text, video, audio,
                                                                 video.target, noisy, 0.0, 0.6))
    assert seen["av_cross_attn_video_a2v_gate"] == [600.0] and seen["av_cross_attn_audio_v2a_gate"] == [0.0]
    assert seen["av_cross_attn_video_scale_shift"] == [0.0] and seen["av_cross_attn_audio_scale_shift"] == [600.0]


def test_av2av_cross_attention_modulated_per_token_as_ltx_core(tiny_model_dir):
    transformer = _transformer_with_multiplier(tiny_model_dir, 1)
    _, text, _, _ = _streams(tiny_model_dir)
    # 2 target video tokens (1x1x2) and 1 reference token; 3 target audio tokens and 3 reference ones.
    sample = Sample("s", None, torch.randn(1, 128, 1, 1, 2), torch.randn(1, 8, 3, 16),
                    torch.randn(1, 128, 1, 1, 1), torch.randn(1, 8, 3, 16))
    video, audio = Strategy(MODES["av2av"]).streams(transformer, sample, 24)
    seen = _modulation_inputs(transformer, lambda: predict(transformer, text, video, audio, video.target,
                                                           audio.target, 0.3, 0.7))
    assert seen == {"av_cross_attn_video_scale_shift": [300.0, 300.0, 0.0],           # target, reference
                    "av_cross_attn_audio_scale_shift": [700.0, 700.0, 700.0, 0.0, 0.0, 0.0],
                    "av_cross_attn_video_a2v_gate": [0.7],   # the audio target's sigma
                    "av_cross_attn_audio_v2a_gate": [0.3]}   # the video target's sigma


def test_diffusers_pipeline_helper_modulates_as_training(tiny_model_dir):
    from diffusers import LTX2Pipeline

    from avlora.model.modulation import modulate_as_ltx_core
    model, text, video, audio = _streams(tiny_model_dir)
    pipe = LTX2Pipeline.from_pretrained(tiny_model_dir, local_files_only=True)
    noisy = torch.randn(audio.target.shape)
    with torch.no_grad():
        trained = predict(model.transformer, text, video, audio, video.target, noisy, 0.0, 0.6)

    def as_the_pipeline_calls_it():  # keyword arguments, use_cross_timestep=True (LTX2Pipeline's default)
        with torch.no_grad():
            return pipe.transformer(
                hidden_states=video.target, audio_hidden_states=noisy, encoder_hidden_states=text.video,
                audio_encoder_hidden_states=text.audio, timestep=torch.tensor([0.0]), sigma=torch.tensor([0.0]),
                audio_timestep=torch.tensor([600.0]), audio_sigma=torch.tensor([600.0]),
                encoder_attention_mask=text.mask, audio_encoder_attention_mask=text.mask,
                video_coords=video.coords, audio_coords=audio.coords, use_cross_timestep=True, return_dict=False)

    stock = as_the_pipeline_calls_it()
    assert not torch.allclose(stock[1], trained[1], atol=1e-5)  # diffusers' own modulation differs
    modulate_as_ltx_core(pipe)
    helped = as_the_pipeline_calls_it()
    assert torch.allclose(helped[0], trained[0], atol=1e-6) and torch.allclose(helped[1], trained[1], atol=1e-6)
    # and the pipeline renders with it (two steps, latents out)
    out = pipe("a ball", num_frames=9, height=64, width=64, num_inference_steps=2, output_type="latent",
               generator=torch.Generator().manual_seed(0), return_dict=False)
    assert all(torch.isfinite(t).all() for t in out)


# -- 6. optimiser and schedule (ltx-trainer _init_optimizer / _create_scheduler) --------------------

def test_learning_rate_decays_linearly_to_a_tenth_without_warmup():
    assert learning_rate(1e-4, 0, 2000) == pytest.approx(1e-4)
    assert learning_rate(1e-4, 1000, 2000) == pytest.approx(5.5e-5)
    assert learning_rate(1e-4, 1999, 2000) == pytest.approx(1.0045e-5)
    # Step for step what the reference's torch LinearLR(start_factor=1, end_factor=0.1) gives.
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=2e-4)
    schedule = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1.0, end_factor=0.1, total_iters=30)
    for step in range(30):
        assert learning_rate(2e-4, step, 30) == pytest.approx(optimizer.param_groups[0]["lr"], rel=1e-9)
        optimizer.step()
        schedule.step()
    defaults = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=2e-4).defaults
    config = optimiser_config(2e-4)["optimizer"]
    assert config["weight_decay"] == defaults["weight_decay"] == 0.01
    assert tuple(config["betas"]) == defaults["betas"] and config["eps"] == defaults["eps"]
    assert optimiser_config(2e-4)["lr_schedule"] == {"type": "linear", "start_factor": 1.0, "end_factor": 0.1,
                                                     "warmup_steps": 0}


# -- 7. memory: nothing per clip stays on the training device ---------------------------------------

def _device_tensors(trainer) -> int:
    """Tensors alive on the training device other than the model's, the optimiser's and the host samples'."""
    gc.collect()
    modules = [trainer.model.transformer, trainer.model.connectors, trainer.model.vae, trainer.model.audio_vae,
               trainer.model.vocoder]
    known = {id(t) for m in modules for t in (*m.parameters(), *m.buffers())}
    known |= {id(t) for state in trainer.optimizer.state.values() for t in state.values()}
    for sample in (*trainer.samples, *trainer.held_out):
        known |= {id(t) for t in (sample.video, sample.audio, sample.prompt.video, sample.prompt.audio,
                                  sample.prompt.mask)}
    return sum(1 for o in gc.get_objects()
               if issubclass(type(o), torch.Tensor) and o.device == trainer.device and id(o) not in known)


def test_device_memory_does_not_grow_with_the_number_of_clips(tmp_path, tiny_model_dir):
    with trainer_environment({"AVLORA_TRAIN_DEVICE": "cpu"}):
        run = TrainerRun(tmp_path, tiny_model_dir, "v2a", validations=0)
        training_set = load_training_set(run.store, run.uri)
        entry = training_set.samples[0]
        clip = load_sample(run.store, entry.name, entry.uri, MODES["v2a"].cache_keys)
        counts = []
        for clips in (2, 40):
            samples = [Sample(f"clip{i}", clip.prompt, clip.video.clone(), clip.audio.clone()) for i in range(clips)]
            trainer = Trainer(run.context(f"memory{clips}"), load_for_training(tiny_model_dir), Strategy(MODES["v2a"]), samples,
                              samples[:1], 24, TrainerOptions(device="cpu"))
            for step in range(3):
                trainer.step(step)
            trainer.validation_loss()
            counts.append(_device_tensors(trainer))
            del trainer
        assert counts[0] == counts[1]


# -- 8. one table of modes ---------------------------------------------------------------------------

def test_no_service_module_tests_the_mode_name():
    """What a mode does is its entry in avlora/modes.py: no stage branches on a mode's name."""
    modules = [path for stage in ("ingest", "preprocess", "trainer")
               for path in (Path(__file__).resolve().parents[1] / "services" / stage).glob("*.py")]
    assert len(modules) > 20
    for path in modules:
        source = path.read_text()
        assert not any(f'"{name}"' in source for name in MODES), path
