"""Audio figures and dataset diagnostics on clips made here: flashes with clicks shifted by known
offsets, clipped, quiet, mono and low-rate sound. Every clip goes through the dataset checks that
`avlora inspect` and the preprocess stage run (check_dataset), so real files are decoded."""

import numpy as np
import pytest

from avlora.audio_figures import audio_figures, loudness_lufs, spectrogram_png, sync_offset, warnings
from avlora.store import LocalFiles, LocalStore
from services.preprocess.checks import check_dataset
from services.preprocess.diagnostics import warnings_summary
from tests.media import write_events_clip
from tests.preprocess_fixtures import manifest_of, small_v2a

FPS = 24
FRAME_MS = 1000 / FPS
EVENTS = [0.45, 1.1, 1.35, 2.2, 2.9, 3.3]   # irregular: only the true shift lines them all up
OFFSETS_MS = [-200, -90, 0, 60, 290]
CLIPS = {f"offset{ms:+d}.mp4": dict(sound_offset=ms / 1000) for ms in OFFSETS_MS} | {
    "clipped.mp4": dict(clip_at=0.2, hum=1.0),
    "quiet.mp4": dict(level=0.002),
    "mono.mp4": dict(audio_channels=1, audio_rate=16000),
    "lowrate.mp4": dict(audio_rate=8000),
    "still.mp4": dict(hum=0.3, events=[]),
}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("figures")
    store = LocalStore(root / "store")
    files = {name: write_events_clip(root / name, **({"events": EVENTS, "fps": FPS} | options)).read_bytes()
             for name, options in CLIPS.items()}
    manifest = manifest_of(store, "figures", files)
    plan, _ = check_dataset(manifest, small_v2a(number_of_frames=89), LocalFiles(store, root / "inputs"))
    assert plan.report.ok, plan.report.errors
    return {clip.name: clip for clip in plan.report.clips}


@pytest.mark.parametrize("offset_ms", OFFSETS_MS)
def test_the_sync_offset_is_found_within_one_frame(report, offset_ms):
    clip = report[f"offset{offset_ms:+d}.mp4"]
    assert clip.figures.sync_offset_ms == pytest.approx(offset_ms, abs=FRAME_MS)
    assert clip.figures.sync_confidence > 0.5
    sync = [w for w in clip.warnings if w.startswith("sound ")]
    if abs(offset_ms) <= FRAME_MS:
        assert clip.warnings == []  # in sync, stereo at 48 kHz, not clipped, not quiet: nothing to say
    else:
        direction = "late" if offset_ms > 0 else "early"
        assert len(sync) == 1 and f"ms {direction} against the picture" in sync[0]
        shown = int(sync[0].split()[1])
        assert shown == pytest.approx(abs(offset_ms), abs=FRAME_MS)


def test_clipped_sound_is_named(report):
    clipped, clean = report["clipped.mp4"], report["offset+0.mp4"]
    assert clipped.figures.clipped_share > 0.001 and clean.figures.clipped_share == 0
    assert clipped.figures.peak_dbfs > -0.1 > clean.figures.peak_dbfs
    assert [w for w in clipped.warnings if w.startswith("clipped audio (")]


def test_quiet_sound_is_named_and_its_onsets_still_line_up(report):
    quiet = report["quiet.mp4"]
    assert quiet.figures.loudness_lufs < -50 < report["offset+0.mp4"].figures.loudness_lufs
    assert len(quiet.warnings) == 1 and quiet.warnings[0].startswith("very low level (")
    assert quiet.figures.sync_offset_ms == pytest.approx(0, abs=FRAME_MS) and quiet.figures.sync_confidence > 0.5


def test_mono_and_low_sample_rates_are_named(report):
    assert report["mono.mp4"].warnings == ["mono sound (the LoRA learns identical left and right channels)"]
    assert report["lowrate.mp4"].warnings == ["low sample rate (8000 Hz; the model hears up to 8000 Hz)"]


def test_a_picture_without_events_gives_no_sync_figure_and_no_warning(report):
    still = report["still.mp4"]
    assert still.figures.sync_confidence == 0 and still.warnings == []
    assert still.figures.silence_share == 0 and still.figures.loudness_lufs > -20


def test_the_events_line_counts_the_clips_with_warnings(report):
    from avlora.v1 import dataset_pb2
    line = warnings_summary(dataset_pb2.DatasetReport(clips=list(report.values())))
    assert line.startswith(f"sound checks: warnings on 8 of the {len(CLIPS)} clips used: offset-200.mp4: sound ")
    assert line.endswith("(and 5 more clips)")


def test_loudness_follows_ebu_tech_3341():
    """EBU Tech 3341 case 1: a stereo 1 kHz sine at -23 dBFS in both channels reads -23.0 LUFS
    (+-0.1); BS.1770's K-weighting leaves 1 kHz at +0.69 dB, so -20 dBFS reads -20.0."""
    rate = 48000
    t = np.arange(20 * rate) / rate
    for dbfs in (-23.0, -20.0):
        sine = 10 ** (dbfs / 20) * np.sin(2 * np.pi * 1000 * t)
        assert loudness_lufs(np.stack([sine, sine]), rate) == pytest.approx(dbfs, abs=0.1)
    assert loudness_lufs(np.zeros((2, rate)), rate) == -70.0


def test_figures_of_a_preview_shorter_than_a_loudness_block():
    rate, seconds = 48000, 9 / 24  # a 9-frame preview: 0.375 s, under BS.1770's 400 ms block
    t = np.arange(round(seconds * rate)) / rate
    figures = audio_figures(np.stack([0.1 * np.sin(2 * np.pi * 1000 * t)] * 2), rate)
    assert figures.loudness_lufs == pytest.approx(-20.0, abs=0.1)  # a 0.1 (-20 dBFS) 1 kHz sine
    assert figures.sync_confidence == 0 and figures.silence_share == 0


def test_sync_offset_of_arrays_in_memory():
    """The same measure on arrays: the picture steps brighter at frames 20, 31 and 60, a click
    sounds 7 frames after each; a lone step and click give no figure (one pair always lines up)."""
    rate, times = 16000, np.arange(96) / FPS
    frames, audio = np.zeros((96, 8, 8), np.uint8), np.zeros((2, 4 * rate))
    for number, frame in enumerate((20, 31, 60)):
        frames[frame:] = 60 * (number + 1)
        audio[:, round((frame + 7) / FPS * rate)] = 1.0
    offset, confidence = sync_offset(audio, rate, frames, times)
    assert offset == pytest.approx(7 * FRAME_MS, abs=FRAME_MS) and confidence > 0.5
    assert warnings(audio_figures(audio, rate, frames, times), FPS, 2, rate)[0].startswith(
        f"sound {offset:.0f} ms late against the picture")
    lone_frames, lone_audio = np.zeros_like(frames), np.zeros_like(audio)
    lone_frames[30:], lone_audio[:, round(37 / FPS * rate)] = 200, 1.0
    assert sync_offset(lone_audio, rate, lone_frames, times) == (0.0, 0.0)


def test_spectrograms_put_the_lora_beside_the_base(tmp_path):
    import cv2
    rate = 48000
    t = np.arange(rate // 2) / rate
    lora, base = np.stack([np.sin(2 * np.pi * 3000 * t)] * 2), np.zeros((2, rate // 2))
    path = spectrogram_png(tmp_path / "spectrograms.png", [("preview 1", lora, base), ("preview 2", base, lora)], rate)
    image = cv2.imread(str(path))
    assert image.shape == (2 * (24 + 192 + 8), 100 + 8 + 100, 3)
    left, right = image[24:216, :100], image[24:216, 108:]
    assert left.mean() > right.mean()  # the tone is bright, silence the colour map's darkest
    assert (image[248:440, :100] == right).all() and (image[248:440, 108:] == left).all()


def test_a_sound_shorter_than_two_onset_windows_has_figures_but_no_sync():
    rate = 16000
    frames, times = np.zeros((3, 8, 8), np.uint8), np.arange(3) / FPS
    figures = audio_figures(np.full((2, 200), 0.5), rate, frames, times)  # 12.5 ms
    assert figures.sync_confidence == 0 and figures.peak_dbfs == pytest.approx(20 * np.log10(0.5))
