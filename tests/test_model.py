"""The tiny model: written, loaded back through the real loading code, every encoder checked."""

import math

import pytest
import torch
from safetensors.torch import load_file

from avlora.model.cache import from_bytes, to_bytes
from avlora.model.components import load_encoders, load_for_training, model_identity
from avlora.model.encode import (
    AUDIO_SAMPLE_RATE, audio_latent_count, connect, decode_audio, decode_video, encode_audio, encode_prompts,
    encode_video, mel_filterbank, mel_spectrogram, prompt_from_cache,
)
from avlora.model.tiny import write_tiny_model


@pytest.fixture(scope="module")
def model_dir(tiny_model_dir):
    return tiny_model_dir


@pytest.fixture(scope="module")
def encoders(model_dir):
    return load_encoders(model_dir)


def test_tiny_model_is_deterministic_and_local(model_dir, tmp_path):
    again = write_tiny_model(tmp_path / "again")
    for name in ("transformer", "connectors", "vae", "audio_vae"):
        first = load_file(next((model_dir / name).glob("*.safetensors")))
        second = load_file(next((again / name).glob("*.safetensors")))
        assert first.keys() == second.keys()
        assert all(torch.equal(first[k], second[k]) for k in first)
    assert model_identity(model_dir)["config_sha256"] == model_identity(again)["config_sha256"]
    with pytest.raises(FileNotFoundError):
        load_for_training(tmp_path / "missing")


def test_video_round_trip_shapes(encoders):
    frames = torch.randint(0, 256, (17, 64, 96, 3), dtype=torch.uint8)
    latents = encode_video(encoders.vae, frames)
    assert latents.shape == (128, 3, 2, 3) and latents.dtype == torch.float32
    decoded = decode_video(encoders.vae, latents)
    assert decoded.shape == (17, 64, 96, 3) and decoded.dtype == torch.uint8
    with pytest.raises(ValueError):
        encode_video(encoders.vae, frames[:16])


def test_mel_spectrogram_front_end():
    seconds = 0.5
    t = torch.arange(int(seconds * AUDIO_SAMPLE_RATE)) / AUDIO_SAMPLE_RATE
    tone = 0.5 * torch.sin(2 * math.pi * 1000 * t)
    mel = mel_spectrogram(torch.stack([tone, tone]))
    assert mel.shape == (2, len(t) // 160 + 1, 64)
    # The filter whose triangle peaks nearest 1 kHz carries the most energy.
    filters = mel_filterbank()
    freqs = torch.linspace(0, 8000, filters.shape[0])
    expected = int(filters[(freqs - 1000).abs().argmin()].argmax())
    assert abs(int(mel[0, 10].argmax()) - expected) <= 1
    assert torch.isclose(mel.min(), torch.tensor(math.log(1e-5))) or mel.min() > math.log(1e-5)


def test_audio_round_trip_shapes(model_dir, encoders):
    frames, fps = 17, 24
    samples = round(frames / fps * AUDIO_SAMPLE_RATE)
    waveform = torch.randn(1, samples) * 0.1
    latents = encode_audio(encoders.audio_vae, waveform, num_latents=audio_latent_count(frames, fps))
    assert latents.shape == (8, audio_latent_count(frames, fps), 16) == (8, 18, 16)
    vocoder = load_for_training(model_dir).vocoder
    audio = decode_audio(encoders.audio_vae, vocoder, latents)
    rate = vocoder.config.output_sampling_rate
    assert audio.shape[0] == 2 and rate == 48000
    assert abs(audio.shape[1] / rate - 18 / 25) < 0.13  # the causal VAE drops 3 of the first 4 mel frames


def test_prompts_cache_compactly_and_exactly(model_dir, encoders):
    embeds, mask = encode_prompts(encoders.text_encoder, encoders.tokenizer, ["a dog barks", "rain on a roof"])
    assert embeds.shape == (2, 32, 32 * 3) and mask.shape == (2, 32) and mask.dtype == torch.int64
    cached = encoders.caption("a dog barks")  # the projected features of the valid tokens (Lightricks' cache)
    valid = int(mask[0].sum())
    assert cached["prompt_video_features"].shape == (valid, 32) and cached["prompt_audio_features"].shape == (valid, 16)
    restored = from_bytes(to_bytes(cached), "prompt")
    connectors = load_for_training(model_dir).connectors
    full = connectors(embeds[:1], mask[:1], padding_side="left")  # diffusers' whole connectors
    compact = connect(connectors, *prompt_from_cache(restored))
    for a, b in zip(full, compact):
        assert torch.allclose(a.float(), b.float(), atol=1e-6)


def test_an_older_cache_is_refused_by_name(tmp_path):
    from safetensors.torch import save
    old = save({"prompt_embeds": torch.zeros(2, 96), "prompt_mask": torch.ones(2, dtype=torch.int64)})  # format 1
    with pytest.raises(ValueError, match="cached file old.safetensors has cache format 1, this trainer reads format 2"):
        from_bytes(old, "old.safetensors")
    with pytest.raises(ValueError, match="cached file junk is not a safetensors file"):
        from_bytes(b"not a safetensors file", "junk")