"""Frame retiming and bucket fitting, checked on clips whose frames carry their own index."""

from fractions import Fraction

import av
import numpy as np
import pytest

from services.preprocess.fitting import (
    available_frames, fill_crop, fit_image, fit_video, sample_times, training_window)
from services.preprocess.probe import probe_media

STEP = 8  # grey level per frame index


def write_numbered_clip(path, frames, fps, times_ms=None, size=(64, 48), with_audio=False):
    """Frame k is flat grey STEP * (k + 1); times_ms gives explicit (variable) timestamps;
    with_audio adds a 440 Hz tone as long as the frames."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps, options={"crf": "10"})
        stream.width, stream.height, stream.pix_fmt = *size, "yuv420p"
        audio = container.add_stream("aac", rate=16000, layout="mono") if with_audio else None
        if times_ms is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        for index in range(frames):
            image = np.full((size[1], size[0], 3), STEP * (index + 1), np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            if times_ms is not None:
                frame.pts, frame.time_base = times_ms[index], Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
        if audio is not None:
            tone = 0.3 * np.sin(np.arange(round(frames / fps * 16000)) * 2 * np.pi * 440 / 16000)
            sound = av.AudioFrame.from_ndarray(tone[None].astype(np.float32), format="fltp", layout="mono")
            sound.sample_rate, sound.pts = 16000, 0
            container.mux(audio.encode(sound))
            container.mux(audio.encode())
    return probe_media(path, path.name)


def indices(frames: np.ndarray) -> list[int]:
    return [round(float(image.mean()) / STEP) - 1 for image in frames]


def fitted_indices(info, frames, rate, auto_scale=False):
    window = training_window(info.duration, frames, rate, auto_scale)
    crop = fill_crop(info.width, info.height, 64, 64)
    return indices(fit_video(info, sample_times(window, frames, rate), crop, (64, 64)))


def test_length_rule_counts_duration_at_the_target_rate():
    assert available_frames(89 / 24, 24) == 89
    assert available_frames(89 / 25, 24) == 85          # 89 frames at 25 fps are 3.56 s: too short
    assert available_frames(222 / 60, 24) == 89         # 222 frames at 60 fps are long enough
    assert available_frames(0.999, 24) == 24            # mkv's millisecond rounding does not cost a frame
    assert training_window(88 / 24, 89, 24, auto_scale=False) is None
    window = training_window(45 / 24, 89, 24, auto_scale=True)
    assert window.source_seconds == pytest.approx(45 / 24) and window.speed == pytest.approx(45 / 89)
    long_window = training_window(10.0, 89, 24, auto_scale=True)
    assert long_window.speed == 1 and long_window.source_seconds == pytest.approx(89 / 24)


@pytest.mark.parametrize("fps,expected", [
    (24, [0, 1, 2, 3, 4, 5, 6, 7, 8]),
    (60, [0, 2, 5, 7, 10, 12, 15, 17, 20]),   # nearest source frame to i / 24 s, ties earlier
    (30, [0, 1, 2, 4, 5, 6, 7, 9, 10]),
    (25, [0, 1, 2, 3, 4, 5, 6, 7, 8]),
])
def test_frames_are_taken_at_the_target_rate(tmp_path, fps, expected):
    info = write_numbered_clip(tmp_path / "n.mp4", frames=24, fps=fps)
    assert fitted_indices(info, 9, 24) == expected


def test_variable_frame_rate_is_resampled_by_timestamps(tmp_path):
    times = [0, 30, 50, 120, 130, 210, 260, 300, 380, 400, 420]
    info = write_numbered_clip(tmp_path / "vfr.mp4", frames=len(times), fps=24, times_ms=times)
    targets = [1000 * i / 24 for i in range(9)]
    expected = [min(range(len(times)), key=lambda k: (abs(times[k] - t), times[k])) for t in targets]
    assert fitted_indices(info, 9, 24) == expected


def test_auto_scale_slows_a_short_clip_down_to_fill_the_frames(tmp_path):
    info = write_numbered_clip(tmp_path / "short.mp4", frames=5, fps=24)
    assert training_window(info.duration, 9, 24, auto_scale=False) is None
    assert fitted_indices(info, 9, 24, auto_scale=True) == [0, 1, 1, 2, 2, 3, 3, 4, 4]


def test_a_window_later_in_the_clip_seeks_and_keeps_exact_frames(tmp_path):
    info = write_numbered_clip(tmp_path / "long.mp4", frames=30, fps=10)
    window = training_window(1.0, 9, 24, False, start=1.5)
    frames = fit_video(info, sample_times(window, 9, 24), fill_crop(64, 48, 64, 64), (64, 64))
    assert indices(frames) == [round(10 * (1.5 + i / 24) - 1e-9) for i in range(9)]


def column_image(width, height):
    image = np.zeros((height, width, 3), np.uint8)
    image[:, :, 0] = (np.arange(width) * 255 // (width - 1))[None, :]
    image[:, :, 1] = (np.arange(height) * 255 // (height - 1))[:, None]
    return image


@pytest.mark.parametrize("source,bucket,kept", [
    ((200, 100), (64, 64), ("width", 0.5)),      # landscape into a square: the middle half of the width
    ((100, 200), (512, 288), ("height", 0.28125)),  # portrait into 16:9: a band across the middle
    ((90, 160), (288, 512), ("none", 1.0)),      # same aspect: nothing cropped
])
def test_resize_to_fill_then_centre_crop(source, bucket, kept):
    fitted = fit_image(column_image(*source), fill_crop(*source, *bucket), bucket)
    assert fitted.shape == (bucket[1], bucket[0], 3)
    axis, fraction = kept
    red_span = (int(fitted[:, 0, 0].mean()), int(fitted[:, -1, 0].mean()))
    green_span = (int(fitted[0, :, 1].mean()), int(fitted[-1, :, 1].mean()))
    span = {"width": red_span, "height": green_span}.get(axis, red_span)
    low, high = 255 * (1 - fraction) / 2, 255 * (1 + fraction) / 2
    assert span[0] == pytest.approx(low, abs=6) and span[1] == pytest.approx(high, abs=6)


def test_a_tiny_clip_is_upscaled_into_the_bucket(tmp_path):
    info = write_numbered_clip(tmp_path / "tiny.mp4", frames=12, fps=24, size=(16, 16))
    frames = fit_video(info, sample_times(training_window(info.duration, 9, 24, False), 9, 24),
                       fill_crop(16, 16, 512, 288), (512, 288))
    assert frames.shape == (9, 288, 512, 3) and indices(frames) == list(range(9))


def test_a_pair_of_different_pixel_sizes_gets_the_same_transform():
    target = column_image(320, 180)
    reference = np.repeat(np.repeat(target, 2, axis=0), 2, axis=1)  # the same picture at 640x360
    crop = fill_crop(320, 180, 64, 64)
    difference = np.abs(fit_image(target, crop, (64, 64)).astype(int) - fit_image(reference, crop, (64, 64)))
    assert difference.mean() < 2


def test_a_rotated_phone_clip_is_fitted_as_displayed(tmp_path):
    path = tmp_path / "phone.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.set_display_rotation(90)  # stored landscape, shown portrait (turned counterclockwise)
        for _ in range(3):
            image = np.zeros((48, 64, 3), np.uint8)
            image[:8, :8] = 255  # a marker in the stored top-left corner
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    info = probe_media(path, "phone.mp4")
    assert (info.width, info.height) == (48, 64)
    frame = fit_video(info, [0.0], fill_crop(48, 64, 48, 64), (48, 64))[0]
    assert frame[-1, 0].min() > 128 and frame[0, 0].max() < 64  # as ffmpeg's autorotate shows it
