"""The training modes on the tiny model: what is noised, what is scored, where references sit."""

import pytest
import torch
import torch.nn.functional as F
from trainer_sets import build_training_set, make_params

from avlora.model.components import load_for_training
from avlora.store import LocalStore
from services.trainer.data import HELD_OUT, TRAINING_CLIPS, load_sample, load_training_set, split_holdout
from services.trainer.losses import diffusion_loss, draw_noise
from services.trainer.strategies import strategy_for
from services.trainer.tokens import encode_text, pack_audio, pack_video, sample_sigma, shift_for_tokens
from services.trainer.training import TrainerOptions, add_lora


def _first_sample(tmp_path, model_dir, params):
    store = LocalStore(tmp_path / "store")
    uri = build_training_set(store, model_dir, "job", params, clips=1, validations=0)
    entry = load_training_set(store, uri).samples[0]
    return load_sample(store, entry.name, entry.uri, strategy_for(params).cache_keys)


def _streams(tmp_path, model_dir, params):
    """The tiny model, the job's strategy, its first cached sample, its text and token streams."""
    model, strategy = load_for_training(model_dir), strategy_for(params)
    sample = _first_sample(tmp_path, model_dir, params)
    video, audio = strategy.streams(model.transformer, sample, 24)
    return model, strategy, sample, encode_text(model.connectors, sample.prompt), video, audio


def test_v2a_scores_audio_only(tmp_path, tiny_model_dir):
    params = make_params("v2a")
    model, strategy, sample, text, video, audio = _streams(tmp_path, tiny_model_dir, params)
    noise = draw_noise(video, audio, torch.Generator().manual_seed(3))
    assert noise.video_sigma == 0 and 0 < noise.audio_sigma < 1
    loss, parts = diffusion_loss(model.transformer, text, video, audio, noise)
    assert set(parts) == {"audio_loss"}

    # The same forward written out against the diffusers API: clean video at t=0/sigma=0, noisy audio.
    x0_video, x0_audio = pack_video(sample.video), pack_audio(sample.audio)
    s = noise.audio_sigma
    zero, audio_t = torch.zeros(1), torch.full((1,), s * 1000)
    video_out, audio_out = model.transformer(
        hidden_states=x0_video, audio_hidden_states=(1 - s) * x0_audio + s * noise.audio,
        encoder_hidden_states=text.video, audio_encoder_hidden_states=text.audio,
        timestep=zero, audio_timestep=audio_t, sigma=zero, audio_sigma=audio_t,
        encoder_attention_mask=text.mask, audio_encoder_attention_mask=text.mask,
        video_coords=video.coords, audio_coords=audio.coords, use_cross_timestep=True, return_dict=False)
    audio_mse = F.mse_loss(audio_out, noise.audio - x0_audio)
    video_mse = F.mse_loss(video_out, noise.video - x0_video)
    assert torch.allclose(loss, audio_mse, rtol=1e-5)
    assert not torch.allclose(loss, audio_mse + video_mse, rtol=1e-3)  # a leaked video term shows here

    trainable = add_lora(model.transformer, strategy, rank=4, seed=0)
    names = [n for n, p in model.transformer.named_parameters() if p.requires_grad]
    assert len(trainable) == len(names) > 0 and all("audio" in n for n in names)
    assert any("video_to_audio_attn" in n for n in names) and any("audio_ff.net.2" in n for n in names)


def test_av2av_appends_scaled_references(tmp_path, tiny_model_dir):
    params = make_params("av2av", number_of_frames=17, validation_number_of_frames=17,
                         reference_downscale_factor=2, reference_temporal_scale_factor=2, resolution="low")
    model, strategy, sample, text, video, audio = _streams(tmp_path, tiny_model_dir, params)
    assert sample.video.shape[2:] == (3, 2, 2) and sample.ref_video.shape[2:] == (2, 1, 1)
    assert video.reference.shape[1] == 2 and audio.reference.shape[1] == audio.count
    target, reference = video.coords[:, :, :video.count], video.coords[:, :, video.count:]
    # The half-size, half-rate reference spans the same seconds and pixels as the target.
    assert torch.allclose(reference[:, 1:].amax(), target[:, 1:].amax())
    assert torch.allclose(reference[:, 0].amax(), target[:, 0].amax())
    assert torch.equal(audio.coords[:, :, audio.count:], audio.coords[:, :, :audio.count])

    noise = draw_noise(video, audio, torch.Generator().manual_seed(0))
    assert 0 < noise.video_sigma < 1 and 0 < noise.audio_sigma < 1 and noise.video_sigma != noise.audio_sigma
    loss, parts = diffusion_loss(model.transformer, text, video, audio, noise)
    assert set(parts) == {"video_loss", "audio_loss"}
    assert loss.item() == pytest.approx(parts["video_loss"] + parts["audio_loss"], rel=1e-5)
    # Only target tokens are scored: changing the target's clean latents changes the loss, the
    # references are conditioning (changing them changes the prediction, not the target).
    trainable = add_lora(model.transformer, strategy, rank=4, seed=0)
    names = {n.split(".lora_")[0].split(".", 2)[2] for n, p in model.transformer.named_parameters()
             if p.requires_grad}
    assert {f"{a}.{p}" for a in ("attn1", "attn2", "audio_attn1", "audio_attn2", "audio_to_video_attn",
                                 "video_to_audio_attn") for p in ("to_q", "to_k", "to_v", "to_out.0")} == names
    assert trainable


def test_sigmas_shift_with_token_count():
    assert shift_for_tokens(1024) == pytest.approx(0.95) and shift_for_tokens(4096) == pytest.approx(2.05)
    generator = torch.Generator().manual_seed(0)
    few = torch.tensor([sample_sigma(100, generator) for _ in range(400)])
    many = torch.tensor([sample_sigma(4096, generator) for _ in range(400)])
    assert few.median() < many.median() and 1e-3 <= few.min() and many.max() <= 1


def test_previews_run_at_intervals_by_default():
    """Every max(500, steps // 4) steps: a few per long run, only the final one for a short run."""
    assert TrainerOptions().intervals(2000)[2] == 500 and TrainerOptions().intervals(4000)[2] == 1000
    assert TrainerOptions().intervals(100)[2] > 100
    assert TrainerOptions(preview_every=10).intervals(100)[2] == 10


def test_holdout_only_from_twenty_clips():
    class Named:
        def __init__(self, name):
            self.name = name
    samples = [Named(f"clip{i:02d}") for i in range(20)]
    train, held, on = split_holdout(samples)
    assert held and {s.name for s in train}.isdisjoint({s.name for s in held}) and on == HELD_OUT
    assert len(train) + len(held) == 20 and split_holdout(samples)[1] == held
    # below 20 clips every clip trains and the loss is measured on the training clips
    assert split_holdout(samples[:19]) == (samples[:19], samples[:19], TRAINING_CLIPS)


def test_gradient_checkpointing_gives_the_same_lora_gradients(tmp_path, tiny_model_dir):
    params = make_params("v2a")
    model, strategy, sample, text, video, audio = _streams(tmp_path, tiny_model_dir, params)
    trainable = add_lora(model.transformer, strategy, rank=4, seed=0)
    torch.nn.init.normal_(trainable[1], std=0.1)  # lora_B starts at zero; make the path non-trivial

    def gradients():
        noise = draw_noise(video, audio, torch.Generator().manual_seed(5))
        loss, _ = diffusion_loss(model.transformer, text, video, audio, noise)
        loss.backward()
        grads = [p.grad.clone() for p in trainable]
        for p in trainable:
            p.grad = None
        return grads

    plain = gradients()
    model.transformer.enable_gradient_checkpointing()
    checkpointed = gradients()
    assert any(g.abs().sum() > 0 for g in plain)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(plain, checkpointed))
