"""Every dataset check through the dry run (inspect_dataset / check_dataset), on real clips."""

import io
import wave

import numpy as np

from services.preprocess.checks import check_dataset, inspect_dataset
from services.preprocess.clips import reference_frame_indices
from services.preprocess.modes import preprocessing_for
from services.preprocess.plan import ALL_TOO_SHORT
from tests.preprocess_fixtures import (inputs, manifest_of, small_a2v, small_av2av, small_v2a, store,  # noqa: F401
                                       write_scenes)
from tests.test_preprocess_fitting import indices, write_numbered_clip

CLIP = dict(frames=12)          # 0.5 s at 24 fps: enough for 9 frames
SHORT = dict(frames=6)          # 0.25 s: too short for 9 frames at 24 fps


def fit(item, params):
    mode = preprocessing_for(params)
    return mode.fit_item(item, mode.training_settings())


def clips_by_name(report):
    return {clip.name: clip for clip in report.clips}


def test_v2a_accepts_clips_with_captions_and_trigger_phrase(store):
    manifest = manifest_of(store, "j", {"walk.mp4": CLIP, "walk.txt": "  footsteps on\ngravel ", "rain.mov": CLIP,
                                        "stray.txt": "no clip"})
    report = inspect_dataset(manifest, small_v2a(trigger_phrase="f0ley"), inputs(store))
    assert report.ok and not report.errors
    clips = clips_by_name(report)
    assert clips["walk.mp4"].accepted and clips["walk.mp4"].caption == "f0ley footsteps on gravel"
    assert clips["rain.mov"].caption == "f0ley"
    assert clips["walk.mp4"].native_frames == 12 and clips["walk.mp4"].audio_channels == 1
    assert [(item.name, item.reason) for item in report.ignored] == [("stray.txt", "caption for no clip: no video named stray")]


def test_every_silent_clip_is_named(store):
    manifest = manifest_of(store, "j", {"ok.mp4": CLIP, "sample02.mp4": CLIP | {"audio_rate": None},
                                        "sample03.mkv": CLIP | {"audio_rate": None}})
    report = inspect_dataset(manifest, small_v2a(), inputs(store))
    assert not report.ok
    assert report.errors == ["sample02.mp4 has no audio track", "sample03.mkv has no audio track"]


def test_corrupt_truncated_and_audio_only_files_are_all_named(store, tmp_path):
    full = manifest_of(store, "src", {"full.mp4": dict(frames=48)})
    data = store.read_bytes(full.files[0].uri)
    manifest = manifest_of(store, "j", {"ok.mp4": CLIP, "garbage.mp4": b"\x00not a video" * 50,
                                        "cut.mp4": data[: len(data) // 2], "empty.avi": b""})
    report = inspect_dataset(manifest, small_v2a(), inputs(store))
    assert len(report.errors) == 3
    for name in ("garbage.mp4", "cut.mp4", "empty.avi"):
        assert any(error.startswith(f"{name} is unreadable or corrupt") for error in report.errors)


def test_a_digitally_silent_track_is_refused(store):
    report = inspect_dataset(manifest_of(store, "j", {"hush.mp4": CLIP | {"tone_hz": 0}}), small_v2a(), inputs(store))
    assert report.errors == ["hush.mp4 has a silent audio track (no sound in the part used for training)"]


def test_images_are_rejected(store):
    report = inspect_dataset(manifest_of(store, "j", {"ok.mp4": CLIP, "photo.png": b"\x89PNG"}), small_v2a(), inputs(store))
    assert len(report.errors) == 1 and report.errors[0].startswith("photo.png is an image")


def test_short_clips_are_skipped_and_reported(store):
    manifest = manifest_of(store, "j", {"long.mp4": CLIP, "short.mp4": SHORT})
    report = inspect_dataset(manifest, small_v2a(), inputs(store))
    assert report.ok
    short = clips_by_name(report)["short.mp4"]
    assert not short.accepted and short.reason.startswith("short.mp4 is too short: 0.25 s gives 6 frames")


def test_all_short_clips_fail_with_the_seed_message(store):
    manifest = manifest_of(store, "j", {"a.mp4": SHORT, "b.mkv": SHORT | {"fps": 60, "frames": 20}})
    report = inspect_dataset(manifest, small_v2a(), inputs(store))
    assert report.errors == [
        "All training videos are too short to be trainable: a.mp4, b.mkv (each needs 9 frames at 24 fps, "
        "0.35 s); turn on auto_scale_input to stretch short clips, or lower number_of_frames"]


def test_auto_scale_input_accepts_short_clips(store):
    manifest = manifest_of(store, "j", {"a.mp4": SHORT, "b.webm": SHORT | {"fps": 30}})
    plan, _ = check_dataset(manifest, small_v2a(auto_scale_input=True), inputs(store))
    assert plan.report.ok and len(plan.items) == 2
    clip = fit(plan.items[0], small_v2a())
    assert clip.media["video"].shape == (9, 288, 512, 3) and clip.media["audio"].shape == (2, 6000)


def test_scene_splitting_cuts_long_clips_and_rechecks_audio(store):
    path = store.path("jobs/j/ingest/files/long.mp4")
    write_scenes(path, [(255, 0, 0), (0, 0, 255), (255, 255, 255)], seconds_each=1.5, audio_seconds=2.5)
    manifest = manifest_of(store, "j", {"short.mp4": CLIP})
    manifest.files.add(name="long.mp4", uri=store.uri("jobs/j/ingest/files/long.mp4"), kind=1)
    params = small_v2a(split_input_into_scenes=True, split_input_duration_threshold=1.0)
    plan, _ = check_dataset(manifest, params, inputs(store))
    names = [item.name for item in plan.items]
    assert names == ["short.mp4", "long.mp4 scene 1 (0.00-1.50 s)", "long.mp4 scene 2 (1.50-3.00 s)"]
    assert len(plan.report.errors) == 1
    assert plan.report.errors[0].startswith("long.mp4 scene 3 (3.00-4.50 s) has no audio track")
    scene_two = fit(plan.items[2], params).media["video"]
    assert scene_two[:, 100, 100, 2].min() > 150 and scene_two[:, 100, 100, 0].max() < 100  # blue only


def test_av2av_pairs_captions_and_trigger(store):
    manifest = manifest_of(store, "j", {"s1_start.mp4": CLIP, "s1_end.mp4": CLIP, "s1.txt": "neon street",
                                        "s2_start.mov": CLIP, "s2_end.mkv": CLIP})
    report = inspect_dataset(manifest, small_av2av(trigger_phrase="av_st9le"), inputs(store))
    assert report.ok
    assert {clip.name: clip.caption for clip in report.clips} == {"s1": "av_st9le neon street", "s2": "av_st9le"}


def test_av2av_broken_pairs_are_clear_errors(store):
    manifest = manifest_of(store, "j", {"a_start.mp4": CLIP, "a_end.mp4": CLIP, "b_end.mp4": CLIP,
                                        "c_start.mp4": CLIP, "d.mp4": CLIP})
    errors = inspect_dataset(manifest, small_av2av(), inputs(store)).errors
    assert "b_end.mp4 is a target missing its reference (no b_start clip)" in errors
    assert "c_start.mp4 has no matching target (no c_end clip)" in errors
    assert ("d.mp4 is neither a reference nor a target: name it d_start or d_end (av2av datasets are "
            "<name>_start / <name>_end pairs)") in errors
    assert len(errors) == 3


def test_a_v2a_dataset_submitted_as_av2av_gets_one_error_suggesting_v2a(store):
    manifest = manifest_of(store, "j", {"walk.mp4": CLIP, "rain.mov": CLIP, "wind.mkv": CLIP})
    assert inspect_dataset(manifest, small_av2av(), inputs(store)).errors == [
        "3 clips are neither a reference nor a target (av2av datasets are <name>_start / <name>_end pairs): "
        "walk.mp4, rain.mov, wind.mkv; no clip is named _start or _end: this looks like a v2a dataset "
        "(single clips), submit it with `avlora submit v2a`"]


def test_av2av_needs_audio_on_both_sides(store):
    manifest = manifest_of(store, "j", {"sample03_start.mp4": CLIP, "sample03_end.mp4": CLIP | {"audio_rate": None}})
    assert inspect_dataset(manifest, small_av2av(), inputs(store)).errors == ["sample03_end.mp4 has no audio track"]


def test_av2av_pair_with_one_short_side_is_skipped(store):
    manifest = manifest_of(store, "j", {"a_start.mp4": CLIP, "a_end.mp4": CLIP,
                                        "b_start.mp4": SHORT, "b_end.mp4": CLIP})
    report = inspect_dataset(manifest, small_av2av(), inputs(store))
    clips = clips_by_name(report)
    assert report.ok and clips["a"].accepted and not clips["b"].accepted
    assert clips["b"].reason.startswith("b_start.mp4 is too short")
    only_short = manifest_of(store, "k", {"b_start.mp4": SHORT, "b_end.mp4": CLIP})
    assert inspect_dataset(only_short, small_av2av(), inputs(store)).errors == [
        f"{ALL_TOO_SHORT}: b (each needs 9 frames at 24 fps, 0.35 s); turn on auto_scale_input to stretch "
        "short clips, or lower number_of_frames"]


def test_av2av_reference_scaling_keeps_frame_zero_then_every_nth(store):
    manifest = manifest_of(store, "j", {"a_end.mp4": dict(frames=24, size=(128, 72))})
    write_numbered_clip(store.path("jobs/j/ingest/files/a_start.mp4"), frames=24, fps=24, size=(64, 36),
                        with_audio=True)
    manifest.files.add(name="a_start.mp4", uri=store.uri("jobs/j/ingest/files/a_start.mp4"), kind=1)
    params = small_av2av(aspect_ratio="1:1", validation_aspect_ratio="1:1", number_of_frames=17,
                         validation_number_of_frames=17, reference_downscale_factor=2,
                         reference_temporal_scale_factor=2)
    plan, _ = check_dataset(manifest, params, inputs(store))
    clip = fit(plan.items[0], params)
    assert clip.media["video"].shape == (17, 512, 512, 3) and clip.media["audio"].shape == (2, round(17 / 24 * 16000))
    assert clip.media["ref_video"].shape == (9, 256, 256, 3)
    assert indices(clip.media["ref_video"]) == [0, 1, 3, 5, 7, 9, 11, 13, 15]  # Lightricks' [0, *range(1, F, S)]
    assert clip.media["ref_audio"].shape == clip.media["audio"].shape
    assert abs(np.abs(clip.media["ref_audio"]).max() - 0.95) < 1e-3  # audio_normalize is on by default


def test_reference_keeps_lightricks_frames():
    """Lightricks' ltx-trainer process_videos._compute_temporal_subsample_indices: all frames for
    S = 1, else [0, *range(1, F, S)] (values worked out by hand for F = 97 and F = 17)."""
    assert reference_frame_indices(97, 1) == list(range(97))
    assert reference_frame_indices(97, 2) == [0, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31, 33, 35,
                                              37, 39, 41, 43, 45, 47, 49, 51, 53, 55, 57, 59, 61, 63, 65, 67, 69, 71,
                                              73, 75, 77, 79, 81, 83, 85, 87, 89, 91, 93, 95]
    assert reference_frame_indices(97, 4) == [0, 1, 5, 9, 13, 17, 21, 25, 29, 33, 37, 41, 45, 49, 53, 57, 61, 65,
                                              69, 73, 77, 81, 85, 89, 93]
    assert reference_frame_indices(17, 2) == [0, 1, 3, 5, 7, 9, 11, 13, 15]
    assert reference_frame_indices(17, 1) == list(range(17))
    assert reference_frame_indices(17, 4) == [0, 1, 5, 9, 13]


def test_validation_reference_needs_audio_or_a_reference_audio(store):
    files = {"a_start.mp4": CLIP, "a_end.mp4": CLIP, "validation/silent.mp4": CLIP | {"audio_rate": None},
             "validation/voice.mp4": CLIP}
    manifest = manifest_of(store, "j", files, validation=[{"prompt": "p", "video": "validation/silent.mp4"}])
    params = small_av2av(validation=[{"prompt": "p", "reference_video_url": "https://e.com/silent.mp4"}])
    assert inspect_dataset(manifest, params, inputs(store)).errors == [
        "validation[0] video https://e.com/silent.mp4 has no audio track and no reference_audio_url was "
        "given (the audio reference is taken from the reference video's own track)"]
    manifest = manifest_of(store, "k", files, validation=[
        {"prompt": "p", "video": "validation/silent.mp4", "audio": "validation/voice.mp4"}])
    params = small_av2av(validation=[{"prompt": "p", "reference_video_url": "https://e.com/silent.mp4",
                                      "reference_audio_url": "upload://voice"}])
    plan, validation = check_dataset(manifest, params, inputs(store))
    assert plan.report.ok and validation[0].media["ref_audio"].label == "validation[0] audio upload://voice"


def test_a_bad_validation_file_is_named_by_the_users_entry(store):
    """Not by the file ingest stored it as (validation0_video.mp4): by the entry and its URL, with
    the URL's credentials hidden."""
    files = {"a.mp4": CLIP, "validation/validation0_video.mp4": b"not a video at all",
             "validation/validation1_video.mp4": CLIP}
    manifest = manifest_of(store, "j", files, validation=[{"prompt": "p", "video": "validation/validation0_video.mp4"},
                                                          {"prompt": "q", "video": "validation/validation1_video.mp4"}])
    params = small_v2a(validation=[{"prompt": "p", "video_url": "https://user:secret@e.com/look.mp4"},
                                   {"prompt": "q", "video_url": "https://e.com/fine.mp4"}])
    errors = inspect_dataset(manifest, params, inputs(store)).errors
    assert len(errors) == 1
    assert errors[0].startswith("validation[0] video https://***@e.com/look.mp4 is unreadable or corrupt (")
    assert "validation0_video" not in errors[0]


def test_v2a_validation_video_may_be_silent_and_short(store):
    files = {"a.mp4": CLIP, "validation/silent.mp4": SHORT | {"audio_rate": None}}
    manifest = manifest_of(store, "j", files, validation=[{"prompt": "rain", "video": "validation/silent.mp4"}])
    params = small_v2a(validation=[{"prompt": "rain", "video_url": "https://e.com/silent.mp4"}])
    plan, validation = check_dataset(manifest, params, inputs(store))
    assert plan.report.ok and validation[0].media["video"].window.speed < 1
    mode = preprocessing_for(params)
    fitted = mode.fit_validation(validation[0], mode.validation_settings())
    assert fitted.media["video"].shape == (9, 288, 512, 3) and fitted.media.keys() == {"video"}
    assert np.isfinite(fitted.media["video"]).all()


def wav_bytes(seconds: float, rate: int = 16000) -> bytes:
    """A mono 16-bit WAV of a 440 Hz tone."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        tone = 0.5 * np.sin(2 * np.pi * 440 * np.arange(int(seconds * rate)) / rate)
        out.writeframes((tone * 32767).astype("<i2").tobytes())
    return buffer.getvalue()


def test_a2v_validation_is_a_sound_from_an_audio_file_or_a_videos_track(store):
    """a2v: clips with sound train as in v2a; a validation entry's sound is fitted alone (no picture),
    from a WAV or from a video's own track; a video without one is refused by the entry's name."""
    files = {"a.mp4": CLIP, "validation/song.wav": wav_bytes(0.5), "validation/voice.mp4": CLIP,
             "validation/silent.mp4": CLIP | {"audio_rate": None}}
    manifest = manifest_of(store, "j", files, validation=[{"prompt": "p", "audio": "validation/song.wav"},
                                                          {"prompt": "q", "audio": "validation/voice.mp4"}])
    params = small_a2v(validation=[{"prompt": "p", "audio_url": "https://e.com/song.wav"},
                                   {"prompt": "q", "audio_url": "https://e.com/voice.mp4"}])
    plan, validation = check_dataset(manifest, params, inputs(store))
    assert plan.report.ok and [item.name for item in plan.items] == ["a.mp4"]
    mode = preprocessing_for(params)
    for item in validation:
        fitted = mode.fit_validation(item, mode.validation_settings())
        assert fitted.media.keys() == {"audio"} and fitted.media["audio"].shape == (2, 6000)  # 9 / 24 s at 16 kHz
        assert np.abs(fitted.media["audio"]).max() > 0.1
    manifest = manifest_of(store, "k", files, validation=[{"prompt": "p", "audio": "validation/silent.mp4"}])
    params = small_a2v(validation=[{"prompt": "p", "audio_url": "https://e.com/silent.mp4"}])
    assert inspect_dataset(manifest, params, inputs(store)).errors == [
        "validation[0] audio https://e.com/silent.mp4 has no audio track"]
