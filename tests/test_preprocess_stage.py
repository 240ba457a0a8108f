"""The preprocess stage end to end against the tiny model: latent and embedding shapes, the cache
reused on redelivery, the debug archive opened and decoded, a cancel honoured while a clip is encoded."""

import dataclasses
import io
import json
import re
import zipfile

import av
import numpy as np
import pytest
import torch

from avlora.settings import Settings
from avlora.store import LocalFiles, LocalStore
from avlora.store_s3 import S3Store
from avlora.v1 import dataset_pb2
from avlora.stage import JobCancelled, JobContext, UserError
from services.preprocess.checks import check_dataset
from avlora.model.cache import from_bytes
from avlora.model.encode import encode_video
from diffusers.models.autoencoders.autoencoder_kl_ltx2 import AutoencoderKLLTX2Video
from services.preprocess.encoding import WHOLE_ENCODING_LIMIT_BYTES, DatasetEncoder, whole_encoding_bytes
from services.preprocess.modes import preprocessing_for
from services.preprocess.stage import run
from tests.preprocess_fixtures import inputs, manifest_of, small_av2av, small_v2a, tiny_model_dir  # noqa: F401
from tests.s3_server import s3_server  # noqa: F401  (fixture)

CLIP = dict(frames=12)
PROMPT = ("prompt_video_features", "prompt_audio_features", "prompt_mask")


def context(store, job_id, params, manifest, model_dir) -> JobContext:
    uri = store.write_bytes(f"jobs/{job_id}/ingest/manifest.pb", manifest.SerializeToString())
    settings = dataclasses.replace(Settings(), model_dir=str(model_dir))
    return JobContext.for_test(job_id, params, store, uri, stage="preprocess", settings=settings)


def tensors(store, uri):
    """The shapes of a cached file, read as the trainer reads it (the cache format's version checked)."""
    return {key: tuple(value.shape) for key, value in from_bytes(store.read_bytes(uri), uri).items()}


@pytest.fixture(scope="module")
def v2a_job(tmp_path_factory, tiny_model_dir):
    store = LocalStore(tmp_path_factory.mktemp("v2a") / "store")
    files = {"walk.mp4": CLIP | {"fps": 30, "audio_channels": 6, "audio_rate": 48000}, "walk.txt": "steps",
             "rain.mkv": CLIP | {"size": (48, 96), "audio_rate": 44100}, "tiny.mp4": dict(frames=4),
             "validation/silent.mp4": CLIP | {"audio_rate": None}}
    manifest = manifest_of(store, "v2a-job", files, validation=[{"prompt": "rain", "video": "validation/silent.mp4"}])
    ctx = context(store, "v2a-job", small_v2a(debug_dataset=True, trigger_phrase="f0ley", validation=[
        {"prompt": "rain", "video_url": "https://example.com/silent.mp4"}]), manifest, tiny_model_dir)
    uri = run(ctx)
    return store, ctx, uri, dataset_pb2.TrainingSet.FromString(store.read_bytes(uri))


def test_v2a_training_set_has_the_trainers_keys_and_shapes(v2a_job):
    store, _, uri, training_set = v2a_job
    assert uri == "store://jobs/v2a-job/preprocess/training_set.pb"
    assert (training_set.mode, training_set.width, training_set.height, training_set.frame_rate) == \
        ("v2a", 512, 288, 24)
    assert [(s.name, s.caption) for s in training_set.samples] == [("walk.mp4", "f0ley steps"), ("rain.mkv", "f0ley")]
    for sample in training_set.samples:
        shapes = tensors(store, sample.uri)
        assert set(shapes) == {"video_latents", "audio_latents", *PROMPT}
        assert shapes["video_latents"] == (128, 2, 9, 16)      # (9 - 1) / 8 + 1 frames, 288 / 32, 512 / 32
        assert shapes["audio_latents"] == (8, 9, 16)           # round(9 / 24 * 25) latents
        assert shapes["prompt_mask"] == (32,) and shapes["prompt_video_features"][0] <= 32
        # the connectors' projected features (tiny widths 32 and 16), not the 3 stacked text layers (96)
        assert shapes["prompt_video_features"][1:] == (32,) and shapes["prompt_audio_features"][1:] == (16,)
    validation = tensors(store, training_set.validation[0].uri)
    assert set(validation) == {"video_latents", *PROMPT}
    assert validation["video_latents"] == (128, 2, 9, 16)
    assert set(tensors(store, training_set.negative_prompt_uri)) == set(PROMPT)
    skipped = [clip for clip in training_set.report.clips if not clip.accepted]
    assert [clip.name for clip in skipped] == ["tiny.mp4"]


def test_the_report_and_the_events_carry_each_clips_sound_checks(v2a_job):
    """Warnings do not stop the job: both clips are trained on, named in their reports and in one
    events line. The 5.1 clip's tone (0.4 in every channel) reaches full scale once downmixed; the
    mono clip is mono; the steady tones give no sync figure."""
    _, ctx, _, training_set = v2a_job
    clips = {clip.name: clip for clip in training_set.report.clips}
    walk, rain = clips["walk.mp4"], clips["rain.mkv"]
    assert len(walk.warnings) == 1 and walk.warnings[0].startswith("clipped audio (")
    assert walk.figures.clipped_share > 0.001 and walk.figures.peak_dbfs > -0.1
    assert rain.warnings == ["mono sound (the LoRA learns identical left and right channels)"]
    # A 0.4 sine: -7.96 dBFS peak; in both channels its BS.1770 loudness is that minus 3.01 dB (RMS)
    # plus 3.01 dB (two channels) minus the 0.691 dB offset, with K-weighting at 440 Hz near 0 dB.
    assert rain.figures.loudness_lufs == pytest.approx(20 * np.log10(0.4) - 0.691, abs=1)
    assert rain.figures.clipped_share == 0 and rain.figures.peak_dbfs == pytest.approx(20 * np.log10(0.4), abs=1)  # AAC
    for clip in (walk, rain):
        figures = clip.figures
        assert figures.name == clip.name and figures.source == "training" and figures.silence_share == 0
        assert -20 < figures.loudness_lufs < 0 and figures.sync_confidence == 0
    messages = [e.progress.message for e in ctx.events if e.progress.message.startswith("sound checks:")]
    assert messages == [f"sound checks: warnings on 2 of the 2 clips used: walk.mp4: {walk.warnings[0]}; "
                        f"rain.mkv: {rain.warnings[0]}"]


def test_debug_archive_holds_playable_fitted_clips_and_the_report(v2a_job):
    store, _, _, training_set = v2a_job
    with zipfile.ZipFile(store.path(training_set.debug_dataset_uri)) as archive:
        names = archive.namelist()
        assert sorted(names) == ["clips/000_walk_mp4.mp4", "clips/000_walk_mp4.txt", "clips/001_rain_mkv.mp4",
                                 "clips/001_rain_mkv.txt", "report.json"]
        assert archive.read("clips/000_walk_mp4.txt").decode() == "f0ley steps"
        with av.open(io.BytesIO(archive.read("clips/001_rain_mkv.mp4"))) as clip:
            frames = list(clip.decode(video=0))
            assert len(frames) == 9 and (frames[0].width, frames[0].height) == (512, 288)
            clip.seek(0)
            samples = sum(frame.samples for frame in clip.decode(audio=0))
            assert clip.streams.audio[0].channels == 2 and samples >= 6000
        report = json.loads(archive.read("report.json"))
        assert {clip["name"]: clip["accepted"] for clip in report["clips"]} == {
            "walk.mp4": True, "rain.mkv": True, "tiny.mp4": False}
        assert "too short" in [clip for clip in report["clips"] if clip["name"] == "tiny.mp4"][0]["reason"]


def test_a_redelivered_job_reuses_the_cache(v2a_job):
    store, ctx, uri, training_set = v2a_job
    files = [store.path(sample.uri) for sample in training_set.samples] + [store.path(training_set.debug_dataset_uri)]
    written = [path.stat().st_mtime_ns for path in files]
    assert run(ctx) == uri  # the finished set is returned as is
    store.remove(uri)       # a redelivery that died before writing the manifest
    again = dataset_pb2.TrainingSet.FromString(store.read_bytes(run(ctx)))
    assert [s.uri for s in again.samples] == [s.uri for s in training_set.samples]
    assert again.debug_dataset_uri == training_set.debug_dataset_uri
    assert [path.stat().st_mtime_ns for path in files] == written


def test_av2av_training_set_carries_scaled_references(tmp_path, tiny_model_dir):
    store = LocalStore(tmp_path / "store")
    files = {"s1_start.mp4": dict(frames=18), "s1_end.mov": dict(frames=18, audio_channels=2),
             "validation/ref.mp4": dict(frames=18, audio_rate=None), "validation/voice.mkv": dict(frames=18)}
    manifest = manifest_of(store, "av", files, validation=[
        {"prompt": "p", "video": "validation/ref.mp4", "audio": "validation/voice.mkv"}])
    params = small_av2av(number_of_frames=17, validation_number_of_frames=17, reference_temporal_scale_factor=2,
                         debug_dataset=True, validation=[{"prompt": "p", "reference_video_url": "https://e.com/ref.mp4",
                                                          "reference_audio_url": "https://e.com/voice.mkv"}])
    training_set = dataset_pb2.TrainingSet.FromString(store.read_bytes(run(context(store, "av", params, manifest,
                                                                                   tiny_model_dir))))
    shapes = tensors(store, training_set.samples[0].uri)
    assert shapes["video_latents"] == (128, 3, 9, 16)
    assert shapes["ref_video_latents"] == (128, 2, 9, 16)      # 9 of 17 frames kept
    assert shapes["audio_latents"] == shapes["ref_audio_latents"] == (8, 18, 16)
    validation = tensors(store, training_set.validation[0].uri)
    assert validation["ref_video_latents"] == (128, 2, 9, 16) and validation["ref_audio_latents"] == (8, 18, 16)
    with zipfile.ZipFile(store.path(training_set.debug_dataset_uri)) as archive:
        with av.open(io.BytesIO(archive.read("clips/000_s1_reference.mp4"))) as reference:
            frames = list(reference.decode(video=0))
            assert len(frames) == 9 and reference.streams.video[0].average_rate == 12


def test_a_dataset_error_fails_the_stage_naming_the_file(tmp_path, tiny_model_dir):
    store = LocalStore(tmp_path / "store")
    manifest = manifest_of(store, "bad", {"a_start.mp4": CLIP, "sample03_end.mp4": CLIP | {"audio_rate": None},
                                          "sample03_start.mp4": CLIP})
    with pytest.raises(UserError) as error:
        run(context(store, "bad", small_av2av(), manifest, tiny_model_dir))
    assert "sample03_end.mp4 has no audio track" in str(error.value)
    assert "a_start.mp4 has no matching target (no a_end clip)" in str(error.value)
    assert not store.exists("jobs/bad/preprocess/training_set.pb")


def test_cache_keys_do_not_depend_on_where_inputs_were_downloaded(tmp_path, s3_server):
    """With an object store every try reads its inputs from a new scratch folder; the cached
    samples' keys (a digest of the planned items) must stay the same, or a redelivery re-encodes."""
    local = LocalStore(tmp_path / "local")
    manifest = manifest_of(local, "j", {"walk.mp4": CLIP, "walk.txt": "steps"})
    remote = S3Store(s3_server.bucket, "cache-keys", client=s3_server.client())
    for key in local.list("jobs/j"):
        remote.put_file(key, local.path(key))
    plans = [check_dataset(manifest, small_v2a(), LocalFiles(remote, tmp_path / scratch))[0]
             for scratch in ("try1", "try2")]
    assert [item.target.info.path.is_relative_to(tmp_path / "try1") for item in plans[0].items] == [True]
    assert repr(plans[0].items) == repr(plans[1].items) and "try1" not in repr(plans[0].items)


class CancelWhileEncoding:
    """Cancels a job from inside the video VAE's encoder, with no clock: a global forward pre-hook
    on the real model sets the cancel flag as the encoder's `after`-th layer starts, and counts the
    encoder layers that start later. Stopping within one layer is stopping within seconds."""

    VIDEO_VAE = AutoencoderKLLTX2Video.__module__

    def __init__(self, ctx: JobContext, after: int = 20):
        self.ctx, self.after = ctx, after
        self.layers = self.layers_after_cancel = 0

    def __enter__(self) -> "CancelWhileEncoding":
        self.handle = torch.nn.modules.module.register_module_forward_pre_hook(self._before_layer)
        return self

    def __exit__(self, *exc) -> None:
        self.handle.remove()

    def _before_layer(self, module, args) -> None:
        if type(module).__module__ != self.VIDEO_VAE:
            return
        if self.ctx.cancelled():
            self.layers_after_cancel += 1
        self.layers += 1
        if self.layers == self.after:
            self.ctx.cancel_flag.set()


LONG_ENCODE = small_v2a(number_of_frames=121, aspect_ratio="1:1")  # 121 x 512 x 512: tiled, ~10 s on a 2-core CPU


def test_cancelling_while_a_clip_is_encoded_stops_before_the_next_layer(tmp_path, tiny_model_dir):
    store = LocalStore(tmp_path / "store")
    manifest = manifest_of(store, "enc", {"long.mp4": dict(frames=121, size=(64, 64))})
    plan, _ = check_dataset(manifest, LONG_ENCODE, inputs(store))
    mode = preprocessing_for(LONG_ENCODE)
    clip = mode.fit_item(plan.items[0], mode.training_settings())
    encoder = DatasetEncoder(str(tiny_model_dir))
    ctx = JobContext.for_test("enc", LONG_ENCODE, store)
    with CancelWhileEncoding(ctx) as cancel, pytest.raises(JobCancelled):
        encoder.training_sample(clip, mode.training_settings(), ctx.cancelled)
    assert (cancel.layers, cancel.layers_after_cancel) == (cancel.after, 0)
    # the check goes with the call: the same encoder, asked without one, encodes
    assert encoder.video(clip.media["video"][:9, :64, :64]).shape == (128, 2, 2, 2)


def test_a_cpu_encodes_small_clips_whole_and_only_large_ones_in_tiles(tiny_model_dir):
    """Tiles encode their overlaps twice: a clip that fits is encoded whole (as on a GPU), a clip
    over the limit in tiles."""
    encoder = DatasetEncoder(str(tiny_model_dir))
    vae = encoder.encoders.vae
    frames = np.random.default_rng(0).integers(0, 256, (25, 128, 128, 3), dtype=np.uint8)
    vae.use_tiling = vae.use_framewise_decoding = True  # 25 frames: tiles of 16 overlapping by 8
    tiled = encode_video(vae, torch.from_numpy(frames))
    vae.use_tiling = vae.use_framewise_decoding = False
    whole = encode_video(vae, torch.from_numpy(frames))
    assert not torch.allclose(tiled, whole, atol=1e-3), "the two ways differ, so the test can tell them apart"
    vae.use_tiling = vae.use_framewise_decoding = True
    assert torch.equal(encoder.video(frames), whole)
    encoder.whole_encoding_limit_bytes = whole_encoding_bytes(vae, *frames.shape[:3]) - 1  # now too large
    assert torch.equal(encoder.video(frames), tiled)
    # The main job's clips (25 frames, 512x288) are encoded whole; the largest legal clip
    # (121 frames, 960x960: over 18 GB whole) and the cancel tests' 121 x 512 x 512 are tiled.
    assert whole_encoding_bytes(vae, 25, 288, 512) < WHOLE_ENCODING_LIMIT_BYTES
    assert whole_encoding_bytes(vae, 121, 512, 512) > WHOLE_ENCODING_LIMIT_BYTES
    assert whole_encoding_bytes(vae, 121, 960, 960) > 16 * 2**30


def test_the_stage_stops_before_the_next_layer_when_cancelled_while_encoding(tmp_path, tiny_model_dir):
    store = LocalStore(tmp_path / "store")
    manifest = manifest_of(store, "stage-enc", {"long.mp4": dict(frames=121, size=(64, 64))})
    ctx = context(store, "stage-enc", LONG_ENCODE, manifest, tiny_model_dir)
    with CancelWhileEncoding(ctx) as cancel, pytest.raises(JobCancelled):
        run(ctx)
    assert (cancel.layers, cancel.layers_after_cancel) == (cancel.after, 0)
    assert not store.exists("jobs/stage-enc/preprocess/training_set.pb")


def test_progress_messages_show_a_hostile_file_name_escaped(tmp_path, tiny_model_dir):
    """Progress messages name the user's files ("checking …", "encoded …"): a name carrying a
    terminal escape and CR/LF reaches the CLI escaped."""
    store = LocalStore(tmp_path / "store")
    manifest = manifest_of(store, "esc", {"red\x1b[31m\r\n.mp4": CLIP})
    ctx = context(store, "esc", small_v2a(), manifest, tiny_model_dir)
    run(ctx)
    messages = [event.progress.message for event in ctx.events if event.HasField("progress") and event.progress.message]
    assert any("red\\x1b[31m\\x0d\\x0a.mp4" in message for message in messages), messages
    assert not any(re.search(r"[\x00-\x1f\x7f]", message) for message in messages), messages
