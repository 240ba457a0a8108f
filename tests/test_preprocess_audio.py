"""Audio over the frames' window: stereo, 16 kHz, fitted, normalised; pitch checked by FFT."""

import numpy as np
import pytest

from services.preprocess.audio import NORMALIZED_PEAK, SAMPLE_RATE, fit_audio, is_silent, read_audio
from services.preprocess.fitting import training_window
from services.preprocess.probe import probe_media
from tests.media import write_clip


def dominant_hz(channel: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(channel * np.hanning(len(channel))))
    return float(np.argmax(spectrum) * SAMPLE_RATE / len(channel))


def test_audio_model_rate_matches_the_model():
    from avlora.model.encode import AUDIO_SAMPLE_RATE

    assert SAMPLE_RATE == AUDIO_SAMPLE_RATE


@pytest.mark.parametrize("suffix,channels,rate", [
    (".mp4", 1, 44100), (".mkv", 2, 48000), (".mp4", 6, 48000), (".webm", 2, 48000), (".avi", 1, 16000)])
def test_any_layout_and_rate_becomes_stereo_16k_over_the_window(tmp_path, suffix, channels, rate):
    path = write_clip(tmp_path / f"a{suffix}", frames=24, audio_channels=channels, audio_rate=rate, tone_hz=440)
    info = probe_media(path, path.name)
    window = training_window(info.duration, 17, 24, auto_scale=False)
    audio = fit_audio(info, window, normalize=False)
    assert audio.shape == (2, round(17 / 24 * SAMPLE_RATE)) and audio.dtype == np.float32
    if channels <= 2:  # mono duplicated, identical channels kept (5.1: each side has its own mix)
        assert np.abs(audio[0] - audio[1]).max() < 0.01
    for channel in audio:
        assert dominant_hz(channel[1000:]) == pytest.approx(440, abs=25)
    assert 0.2 < np.abs(audio).max() <= 1.0


def test_a_window_later_in_the_clip_reads_that_part_only(tmp_path):
    path = write_clip(tmp_path / "a.mp4", frames=96, audio_rate=16000)
    info = probe_media(path, "a.mp4")
    tail = read_audio(info, 3.5, 1.0)  # the clip (and its tone) ends at 4.0 s
    assert np.abs(tail[:, : SAMPLE_RATE // 2 - 800]).max() > 0.2
    assert np.abs(tail[:, SAMPLE_RATE // 2 + 800:]).max() == 0


def test_normalize_scales_the_peak_and_otherwise_levels_are_kept(tmp_path):
    info = probe_media(write_clip(tmp_path / "a.mp4", frames=24), "a.mp4")
    window = training_window(info.duration, 9, 24, auto_scale=False)
    assert np.abs(fit_audio(info, window, normalize=True)).max() == pytest.approx(NORMALIZED_PEAK, abs=1e-3)
    assert np.abs(fit_audio(info, window, normalize=False)).max() == pytest.approx(0.4, abs=0.05)


@pytest.mark.parametrize("preserve_pitch,expected_hz", [(True, 880), (False, 880 * 0.48)])
def test_stretching_keeps_or_lowers_the_pitch(tmp_path, preserve_pitch, expected_hz):
    info = probe_media(write_clip(tmp_path / "a.mp4", frames=12, tone_hz=880), "a.mp4")  # 0.5 s
    window = training_window(info.duration, 25, 24, auto_scale=True)  # slowed to 25 / 24 s
    assert window.speed == pytest.approx(0.48, abs=0.01)
    audio = fit_audio(info, window, normalize=False, preserve_pitch=preserve_pitch)
    assert audio.shape == (2, round(25 / 24 * SAMPLE_RATE))
    assert dominant_hz(audio[0, 1000:-2000]) == pytest.approx(expected_hz, rel=0.05)
    assert np.abs(audio[:, 2000:-2000]).max() > 0.2


def test_silence_is_detected():
    assert is_silent(np.zeros((2, 100), np.float32))
    assert not is_silent(np.full((2, 100), 0.01, np.float32))
