"""Probing real clips written by the tests: containers, rates, audio layouts, broken files."""

import av
import numpy as np
import pytest

from avlora.stage import UserError
from services.preprocess.probe import probe_media, require_audio
from tests.media import write_clip


def write_audio_only(path, seconds=1.0, rate=16000):
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=rate, layout="stereo")
        samples = np.zeros((2, int(seconds * rate)), np.float32)
        samples[:] = 0.2 * np.sin(np.arange(samples.shape[1]) * 0.1)
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="stereo")
        frame.sample_rate, frame.pts = rate, 0
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


@pytest.mark.parametrize("suffix", [".mp4", ".mov", ".mkv", ".avi", ".webm"])
def test_every_listed_container_is_measured_from_its_packets(tmp_path, suffix):
    path = write_clip(tmp_path / f"clip{suffix}", frames=24, fps=24, size=(96, 64))
    info = probe_media(path, f"clip{suffix}")
    assert (info.width, info.height) == (96, 64)
    assert info.native_frames == 24
    # avi's mpeg4 timestamps leave a gap after the first frame: the timestamps are the truth
    assert info.duration == pytest.approx(1.0, abs=0.1 if suffix == ".avi" else 0.002)
    assert info.native_fps == pytest.approx(24)
    assert info.has_audio and info.audio_channels == 1
    assert info.audio_end == pytest.approx(1.0, abs=0.1)


def test_a_clip_without_audio_is_named_by_the_audio_requirement(tmp_path):
    info = probe_media(write_clip(tmp_path / "sample03_end.mp4", audio_rate=None), "sample03_end.mp4")
    assert not info.has_audio
    with pytest.raises(UserError, match=r"^sample03_end.mp4 has no audio track$"):
        require_audio(info)


@pytest.mark.parametrize("content", [b"", b"this is not a video at all" * 100])
def test_garbage_and_empty_files_are_unreadable(tmp_path, content):
    path = tmp_path / "broken.mp4"
    path.write_bytes(content)
    with pytest.raises(UserError, match=r"^broken.mp4 is unreadable or corrupt"):
        probe_media(path, "broken.mp4")


def test_a_truncated_mp4_is_refused(tmp_path):
    path = write_clip(tmp_path / "full.mp4", frames=48)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(UserError, match=r"^cut.mp4 is unreadable or corrupt"):
        probe_media(cut, "cut.mp4")


def test_a_truncated_mkv_is_measured_by_what_is_left(tmp_path):
    path = write_clip(tmp_path / "full.mkv", frames=96, size=(96, 64))
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    info = probe_media(cut, "cut.mkv")
    assert 0 < info.native_frames < 96
    assert info.duration < 3.9


def test_an_audio_only_file_has_no_video_stream(tmp_path):
    path = write_audio_only(tmp_path / "song.mp4")
    with pytest.raises(UserError, match=r"^song.mp4 has no video stream$"):
        probe_media(path, "song.mp4")
    info = probe_media(path, "song.mp4", need_video=False)  # a validation audio reference
    assert info.has_audio and info.duration == pytest.approx(1.0, abs=0.07)


@pytest.mark.parametrize("channels,rate", [(1, 44100), (2, 48000), (6, 48000)])
def test_audio_layouts_and_rates_are_reported(tmp_path, channels, rate):
    info = probe_media(write_clip(tmp_path / "a.mkv", audio_channels=channels, audio_rate=rate), "a.mkv")
    assert (info.audio_channels, info.audio_sample_rate) == (channels, rate)


@pytest.mark.parametrize("fps", [25, 30, 60])
def test_native_rates(tmp_path, fps):
    info = probe_media(write_clip(tmp_path / "a.mp4", frames=fps, fps=fps), "a.mp4")
    assert info.native_fps == pytest.approx(fps)
    assert info.duration == pytest.approx(1.0, abs=1e-3)


def test_variable_frame_rate_is_measured_by_timestamps(tmp_path):
    info = probe_media(write_clip(tmp_path / "vfr.mp4", frames=24, fps=24, variable_frame_rate=True), "vfr.mp4")
    assert info.native_frames == 24
    assert info.duration == pytest.approx(1.0, abs=0.05)


@pytest.mark.parametrize("size", [(48, 96), (64, 64), (16, 16)])
def test_portrait_square_and_tiny_sizes(tmp_path, size):
    info = probe_media(write_clip(tmp_path / "a.mp4", size=size), "a.mp4")
    assert (info.width, info.height) == size
