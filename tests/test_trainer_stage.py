"""The trainer stage end to end on the tiny model: outputs opened and checked, resume, cancellation."""

import json

import av
import numpy as np
import pytest
import torch
from diffusers import LTX2Pipeline
from safetensors.torch import load_file
from trainer_sets import TrainerRun, trainer_environment

from avlora.store import JobFiles
from avlora.stage import JobCancelled
from avlora.model.components import load_for_training
from services.trainer import stage
from services.trainer.data import load_prompt, load_training_set
from services.trainer.previews import PreviewRenderer
from services.trainer.strategies import strategy_for
from services.trainer.training import TrainerOptions, autocast_for
from services.trainer.lora_files import read_lora_metadata

TRAINER_ENV = {"AVLORA_TRAIN_CHECKPOINT_EVERY": "25", "AVLORA_TRAIN_VALIDATION_EVERY": "50",
       "AVLORA_TRAIN_SAMPLING_STEPS": "3", "AVLORA_TRAIN_DEVICE": "cpu"}


@pytest.fixture(scope="module")
def v2a(trainer_env, tmp_path_factory, tiny_model_dir):
    run = TrainerRun(tmp_path_factory.mktemp("v2a"), tiny_model_dir, "v2a", validations=2, trigger_phrase="bnc")
    ctx = run.context("v2a-job")
    return run, ctx, stage.run(ctx)


@pytest.fixture(scope="module")
def av2av(trainer_env, tmp_path_factory, tiny_model_dir):
    run = TrainerRun(tmp_path_factory.mktemp("av2av"), tiny_model_dir, "av2av", validations=2, trigger_phrase="bnc")
    ctx = run.context("av2av-job")
    return run, ctx, stage.run(ctx)


def _progress(ctx):
    return [e.progress for e in ctx.events if e.HasField("progress")]


def test_v2a_job_learns_and_reports(v2a):
    run, ctx, outputs = v2a
    steps = [p for p in _progress(ctx) if p.unit == "steps"]
    assert steps[-1].done == steps[-1].total == 100
    assert all(p.audio_loss > 0 and p.video_loss == 0 and p.rate > 0 for p in steps)
    last = steps[-1]
    assert last.baseline_validation_loss > 0 and last.validation_loss < last.baseline_validation_loss
    # 4 clips: none held out, the loss is measured on the training clips, and both reports say so
    assert all(p.validation_loss_on == "training_clips" for p in steps)
    config = json.loads(run.store.read_bytes(outputs.config_file))
    assert config["validation_loss_on"] == "training_clips"
    assert config["mode"] == "v2a" and config["trigger_phrase"] == "bnc" and config["rank"] == config["alpha"] == 8
    assert "video_to_audio_attn.to_q" in config["target_modules"] and config["steps_completed"] == 100
    assert config["base_model"]["config_sha256"] and config["frame_rate"] == 24
    assert config["optimizer"]["weight_decay"] == 0.01 and config["lr_schedule"]["end_factor"] == 0.1
    for uri in (outputs.lora_file, outputs.lora_comfyui_file):
        metadata = read_lora_metadata(run.store.path(uri))
        assert metadata["mode"] == "v2a" and metadata["trigger_phrase"] == "bnc" and metadata["rank"] == "8"
        assert "reference_downscale_factor" not in metadata  # Lightricks writes factors of 1 as absent
    # Progress moves through the final previews' sampling steps (the LoRA's, then the base model's), named.
    sampling = [(p.done, p.total, p.message) for p in _progress(ctx) if p.unit == "sampling steps"]
    assert sampling == [(d, 3, f"{label} {n}/2") for label in ("preview", "base preview") for n in (1, 2)
                        for d in (1, 2, 3)]
    state = torch.load(run.store.path(JobFiles("v2a-job").checkpoint), weights_only=True)
    assert state["step"] == 100 and state["lora"] and state["optimizer"]["state"]
    assert not (run.store.root / "jobs/v2a-job/train/previews").exists()  # a short job: the final preview only


def test_v2a_preview_is_one_audio_file_of_the_right_duration(v2a):
    run, _, outputs = v2a
    assert outputs.audio.endswith(".wav") and not outputs.video
    with av.open(str(run.store.path(outputs.audio))) as container:
        stream = container.streams.audio[0]
        samples = np.concatenate([f.to_ndarray() for f in container.decode(stream)], axis=-1)
        assert stream.rate == 48000 and stream.channels == 2
    assert samples.shape[-1] / 2 / 48000 == pytest.approx(2 * 9 / 24, abs=1e-3)  # two validation clips


def _sound(path) -> np.ndarray:
    """[channels, samples] of a file's audio (packed formats de-interleaved)."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        data = np.concatenate([f.to_ndarray() for f in container.decode(stream)], axis=-1)
    return data if data.shape[0] == stream.channels else data.reshape(-1, stream.channels).T


def test_v2a_base_preview_is_the_same_sampling_with_the_lora_off(v2a):
    """preview_base.wav: the same samples, seed, noise and guidance with the LoRA disabled. It
    differs from the LoRA's preview and is exactly what the model without any LoRA renders."""
    run, ctx, outputs = v2a
    assert outputs.audio_base.endswith("/outputs/preview_base.wav") and not outputs.video_base
    lora, base = _sound(run.store.path(outputs.audio)), _sound(run.store.path(outputs.audio_base))
    assert lora.shape == base.shape and np.abs(base).max() > 0
    assert not np.allclose(lora, base, atol=1e-3)
    options = TrainerOptions.from_env()
    model = load_for_training(run.model_dir, torch.device("cpu"), torch.float32, decoders_device="cpu")
    training_set = load_training_set(run.store, run.uri)
    strategy = strategy_for(run.params)
    renderer = PreviewRenderer(model, strategy, load_prompt(run.store, training_set.negative_prompt_uri),
                               options.sampling_steps, run.params.stg_scale, autocast_for(model.transformer.device),
                               options.seed)
    fresh = renderer.clips(stage.preview_items(ctx, strategy, training_set, [], model.vae))
    expected = np.concatenate([clip.sound for clip in fresh], axis=1)
    assert np.abs(base / 32768 - expected).max() <= 1.5 / 32768  # 16-bit WAV rounding


def test_v2a_previews_on_their_picture(v2a):
    """preview_video.mp4 / preview_video_base.mp4: the validation videos (as the model sees them)
    carrying the LoRA's / the base model's soundtrack, of the validation clips' length."""
    run, _, outputs = v2a
    for uri, wav in ((outputs.preview_video, outputs.audio), (outputs.preview_video_base, outputs.audio_base)):
        assert uri.endswith(".mp4")
        with av.open(str(run.store.path(uri))) as container:
            video = container.streams.video[0]
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video)]
        assert len(frames) == 2 * 9 and frames[0].shape == (64, 64, 3)
        sound = _sound(run.store.path(uri))
        assert sound.shape[-1] / 48000 == pytest.approx(2 * 9 / 24, abs=0.05)
        # AAC's rendering of the WAV's sound: the same level (RMS) to within 1.5 dB
        reference = _sound(run.store.path(wav)).astype(np.float32) / 32768
        rms = [np.sqrt(np.mean(np.square(x))) for x in (sound, reference)]
        assert 20 * np.log10(rms[0] / rms[1]) == pytest.approx(0, abs=1.5)
    with av.open(str(run.store.path(outputs.preview_video))) as ours, \
            av.open(str(run.store.path(outputs.preview_video_base))) as theirs:
        first = [next(c.decode(video=0)).to_ndarray(format="rgb24") for c in (ours, theirs)]
    assert np.abs(first[0].astype(int) - first[1].astype(int)).mean() < 2  # the same picture


def test_v2a_audio_figures_in_the_outputs_metrics_and_spectrograms(v2a):
    import cv2
    run, _, outputs = v2a
    figures = list(outputs.audio_figures)
    assert [(f.name, f.source) for f in figures] == [(f"preview {n}", source) for source in ("lora", "base")
                                                     for n in (1, 2)]
    for f in figures:
        assert -70 <= f.loudness_lufs < 0 and -120 <= f.peak_dbfs <= 0 and 0 <= f.clipped_share <= 1
        assert 0 <= f.silence_share <= 1 and 0 <= f.sync_confidence <= 1 and abs(f.sync_offset_ms) <= 1000
    metrics = json.loads(run.store.read_bytes(outputs.metrics_file))
    assert [(m["name"], m["source"], m["loudness_lufs"]) for m in metrics["audio_figures"]] == [
        (f.name, f.source, f.loudness_lufs) for f in figures]
    assert outputs.metrics_file.endswith("/outputs/metrics.json")
    image = cv2.imread(str(run.store.path(outputs.spectrograms)))
    assert outputs.spectrograms.endswith(".png") and image.shape[0] == 2 * (24 + 192 + 8)  # a row per preview
    assert image.shape[1] == 2 * 75 + 8  # LoRA | base, 0.375 s each at 200 px/s (at least 64)


def test_lora_file_loads_in_the_pipeline_and_changes_output(v2a, trainer_env, tiny_model_dir):
    run, _, outputs = v2a
    pipe = LTX2Pipeline.from_pretrained(tiny_model_dir, local_files_only=True)

    def generate():
        return pipe(prompt="bnc a ball", negative_prompt="", height=64, width=64, num_frames=9,
                    num_inference_steps=2, output_type="np", return_dict=False,
                    generator=torch.Generator().manual_seed(0))

    base_video, base_audio = generate()
    pipe.load_lora_weights(str(run.store.path(outputs.lora_file)), adapter_name="trained")
    video, audio = generate()
    assert not torch.allclose(audio, base_audio, atol=1e-4)
    pipe.delete_adapters("trained")
    comfy = load_file(run.store.path(outputs.lora_comfyui_file))
    assert all(k.startswith("diffusion_model.transformer_blocks.") for k in comfy)
    assert all(v.dtype == torch.bfloat16 for v in comfy.values())
    pipe.load_lora_weights({k: v.float() for k, v in comfy.items()}, adapter_name="comfy")
    comfy_video, comfy_audio = generate()  # the same LoRA up to bf16 rounding
    assert torch.allclose(comfy_audio, audio, atol=1e-3) and np.allclose(comfy_video, video, atol=1e-3)
    assert not torch.allclose(comfy_audio, base_audio, atol=1e-4)


def test_av2av_reel_carries_generated_audio(av2av):
    run, ctx, outputs = av2av
    steps = [p for p in _progress(ctx) if p.unit == "steps"]
    assert steps[-1].video_loss > 0 and steps[-1].audio_loss > 0
    assert outputs.video.endswith(".mp4") and not outputs.audio
    assert outputs.video_base.endswith("/outputs/preview_base.mp4") and not outputs.audio_base
    assert not outputs.preview_video and not outputs.preview_video_base  # the reel already has its picture
    with av.open(str(run.store.path(outputs.video_base))) as container:
        base_frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(base_frames) == 2 * 9
    assert [(f.name, f.source) for f in outputs.audio_figures] == [
        (f"preview {n}", source) for source in ("lora", "base") for n in (1, 2)]
    with av.open(str(run.store.path(outputs.video))) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        frames = sum(1 for _ in container.decode(video))
        container.seek(0)
        sound = np.concatenate([f.to_ndarray() for f in container.decode(audio)], axis=-1)
    assert frames == 2 * 9 and (video.width, video.height) == (64, 64)
    assert audio.rate == 48000 and sound.shape[-1] / 48000 == pytest.approx(2 * 9 / 24, abs=0.05)
    assert np.abs(sound).max() > 0
    config = json.loads(run.store.read_bytes(outputs.config_file))
    assert config["target_modules"] == ["to_q", "to_k", "to_v", "to_out.0"]
    assert config["reference_downscale_factor"] == 1


def test_rerun_returns_the_recorded_outputs(v2a):
    run, _, outputs = v2a
    rerun = run.context("v2a-job", attempt=2)
    assert stage.run(rerun) == outputs
    assert _progress(rerun) == [], "nothing trained again"


def test_interrupted_job_resumes_from_its_checkpoint(v2a, trainer_env):
    run, _, outputs = v2a
    ctx = run.context("resumed-job")
    emit = ctx.emit

    def stop_after_60(event):  # the job is stopped mid-run, after a checkpoint (every 25 steps)
        emit(event)
        if event.HasField("progress") and event.progress.done >= 60:
            ctx.cancel_flag.set()

    ctx.emit = stop_after_60
    with pytest.raises(JobCancelled):
        stage.run(ctx)
    saved = torch.load(run.store.path(JobFiles("resumed-job").checkpoint), weights_only=True)["step"]
    assert 50 <= saved < 100 and saved % 25 == 0
    again = run.context("resumed-job", attempt=2)
    resumed = stage.run(again)
    steps = [p.done for p in _progress(again) if p.unit == "steps"]
    assert min(steps) > saved and steps[-1] == 100
    assert any(f"resumed from the checkpoint at step {saved}" in p.message for p in _progress(again))
    # The continuation is exactly the uninterrupted run's (same data order, noise and optimizer state).
    expected, got = load_file(run.store.path(outputs.lora_file)), load_file(run.store.path(resumed.lora_file))
    assert expected.keys() == got.keys()
    assert all(torch.allclose(expected[k], got[k], atol=1e-6) for k in expected)


def test_cancel_stops_within_a_step(v2a):
    run, _, _ = v2a
    ctx = run.context("cancelled-job")
    ctx.cancel_flag.set()
    with pytest.raises(JobCancelled):
        stage.run(ctx)
    assert not [p for p in _progress(ctx) if p.unit == "steps" and p.done > 0], "no step taken after the cancel"
    assert not run.store.exists("jobs/cancelled-job/outputs/outputs.pb")


def test_a_job_with_fp8_base_weights_writes_the_same_kind_of_outputs(v2a, trainer_env, tiny_model_dir):
    """AVLORA_TRAIN_FP8=1 through the stage: it says so, learns, and writes LoRA files of the same
    keys and dtypes (only the base weights were fp8) and its preview."""
    run, _, baseline = v2a
    ctx = run.context("fp8-job")
    with trainer_environment({"AVLORA_TRAIN_FP8": "1"}):
        outputs = stage.run(ctx)
    assert any(p.message.startswith("fp8 base weights: ") for p in _progress(ctx))
    steps = [p for p in _progress(ctx) if p.unit == "steps"]
    assert steps[-1].done == 100 and steps[-1].validation_loss < steps[-1].baseline_validation_loss
    for field in ("lora_file", "lora_comfyui_file"):
        ours, theirs = load_file(run.store.path(getattr(outputs, field))), load_file(run.store.path(getattr(baseline, field)))
        assert {k: (v.shape, v.dtype) for k, v in ours.items()} == {k: (v.shape, v.dtype) for k, v in theirs.items()}
    assert run.store.path(outputs.audio).stat().st_size > 0
