"""The demo dataset: layout, captions, lengths, and a soundtrack that really follows the picture.

Everything is measured from the decoded files: the ball's wall touches from the pixels, the clicks'
onsets and pitch from the samples."""

import io
import zipfile

import av
import numpy as np
import pytest

from avlora import demo_data
from avlora.demo_data import BORDER, COLOURS, SPARE_FRAMES

FRAMES, FPS, SIZE = 25, 24, (128, 96)


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo")
    return {mode: demo_data.write_demo_dataset(mode, folder / f"{mode}.zip", clips=4, frames=FRAMES,
                                               fps=FPS, size=SIZE, seed=3)
            for mode in ("v2a", "av2av")}


def decode(data: bytes) -> dict:
    """The clip's RGB frames, frame rate, audio (its channels' mix, and the channels; None without
    a track) and durations."""
    with av.open(io.BytesIO(data)) as container:
        video_stream = container.streams.video[0]
        fps = float(video_stream.average_rate)
        frames = np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])
    audio, channels, rate = None, None, None
    with av.open(io.BytesIO(data)) as container:
        if container.streams.audio:
            rate = container.streams.audio[0].rate
            channels = np.concatenate([frame.to_ndarray() for frame in container.decode(audio=0)], axis=1)
            audio = channels.mean(axis=0)
    return {"frames": frames, "fps": fps, "audio": audio, "channels": channels, "rate": rate}


def ball_masks(frames: np.ndarray) -> np.ndarray:
    """Per frame, the pixels of the box's inside that differ strongly from its background."""
    inside = frames[:, BORDER:-BORDER, BORDER:-BORDER].astype(int)
    background = np.median(inside.reshape(-1, 3), axis=0)
    return np.abs(inside - background).max(axis=-1) > 80


def touch_frames(frames: np.ndarray) -> list[int]:
    """Frames on which the ball's bounding box reaches a wall of the box (within 1 pixel)."""
    touches = []
    for index, mask in enumerate(ball_masks(frames)):
        rows, cols = np.nonzero(mask)
        assert len(rows), f"no ball on frame {index}"
        height, width = mask.shape
        if min(rows.min(), cols.min()) <= 1 or rows.max() >= height - 2 or cols.max() >= width - 2:
            touches.append(index)
    return touches


def ball_colour(frames: np.ndarray) -> np.ndarray:
    masks = ball_masks(frames)
    return frames[:, BORDER:-BORDER, BORDER:-BORDER][masks].mean(axis=0)


def nearest_colour_name(rgb: np.ndarray) -> str:
    return min(COLOURS, key=lambda name: np.linalg.norm(np.array(COLOURS[name][0]) - rgb))


def click_onsets(audio: np.ndarray, rate: int) -> np.ndarray:
    """Times (s) where the sound gets loud after at least 15 ms of quiet."""
    loud = np.nonzero(np.abs(audio) > 0.1 * np.abs(audio).max())[0]
    starts = loud[np.concatenate([[True], np.diff(loud) > 0.015 * rate])]
    return starts / rate


def dominant_frequency(audio: np.ndarray, rate: int, start: float) -> float:
    """The strongest frequency in the 25 ms after `start`."""
    piece = audio[int(start * rate):int((start + 0.025) * rate)]
    spectrum = np.abs(np.fft.rfft(piece * np.hanning(len(piece)), n=16384))
    return float(np.fft.rfftfreq(16384, 1 / rate)[spectrum.argmax()])


def check_sound_follows_picture(clip: dict) -> tuple[list[int], np.ndarray]:
    touches = touch_frames(clip["frames"])
    onsets = click_onsets(clip["audio"], clip["rate"])
    assert len(touches) >= 3
    assert len(onsets) == len(touches), (touches, onsets * clip["fps"])
    # each click starts within a quarter of a frame of the frame on which the ball touches a wall
    np.testing.assert_array_less(np.abs(onsets - np.array(touches) / clip["fps"]), 0.25 / clip["fps"])
    return touches, onsets


def test_v2a_layout_captions_and_lengths(datasets):
    with zipfile.ZipFile(datasets["v2a"]) as archive:
        names = archive.namelist()
        assert sorted(names) == sorted(f"ball{i:02d}{ext}" for i in range(4) for ext in (".mp4", ".txt"))
        for name in (n for n in names if n.endswith(".mp4")):
            clip = decode(archive.read(name))
            assert len(clip["frames"]) == FRAMES + SPARE_FRAMES >= FRAMES
            assert clip["frames"].shape[1:] == (SIZE[1], SIZE[0], 3)
            assert clip["fps"] == FPS and clip["rate"] == demo_data.AUDIO_RATE
            video_seconds = len(clip["frames"]) / FPS
            assert abs(len(clip["audio"]) / clip["rate"] - video_seconds) < 1 / FPS
            colour = nearest_colour_name(ball_colour(clip["frames"]))
            caption = archive.read(name.replace(".mp4", ".txt")).decode()
            assert caption.startswith(f"a {colour} ball bouncing") and COLOURS[colour][2] in caption


def test_v2a_clicks_land_on_wall_touches_with_the_colours_pitch(datasets):
    pitches = {}
    with zipfile.ZipFile(datasets["v2a"]) as archive:
        for index, plan in enumerate(demo_data.plan_clips(4, FRAMES, seed=3)):
            clip = decode(archive.read(f"ball{index:02d}.mp4"))
            touches, onsets = check_sound_follows_picture(clip)
            assert touches == demo_data.bounce_frames(plan)
            colour = nearest_colour_name(ball_colour(clip["frames"]))
            assert colour == plan.colour
            measured = [dominant_frequency(clip["audio"], clip["rate"], t) for t in onsets]
            assert measured == pytest.approx([COLOURS[colour][1]] * len(onsets), rel=0.05)
            pitches[colour] = measured[0]
    assert set(pitches) == set(COLOURS)  # every colour appears, each with its own pitch
    ordered = [pitches[name] for name in sorted(COLOURS, key=lambda name: COLOURS[name][1])]
    assert all(low * 1.2 < high for low, high in zip(ordered, ordered[1:]))


def test_v2a_clicks_are_stereo_panned_to_where_the_ball_is(datasets):
    """Each click is louder on the side of the box the ball is on, and heard on both sides."""
    checked = 0
    with zipfile.ZipFile(datasets["v2a"]) as archive:
        for index in range(4):
            clip = decode(archive.read(f"ball{index:02d}.mp4"))
            assert clip["channels"].shape[0] == 2
            masks = ball_masks(clip["frames"])
            touches, onsets = check_sound_follows_picture(clip)
            for frame, onset in zip(touches, onsets):
                across = np.nonzero(masks[frame])[1].mean() / masks.shape[2]  # 0: left wall, 1: right
                start = int(onset * clip["rate"])
                left, right = np.abs(clip["channels"][:, start:start + int(0.02 * clip["rate"])]).max(axis=1)
                assert min(left, right) > 0.3 * max(left, right)
                if abs(across - 0.5) > 0.2:
                    assert (left > right) == (across < 0.5), (index, frame, across, left, right)
                    checked += 1
    assert checked >= 4


def test_av2av_end_is_the_start_transformed_with_the_same_timing(datasets):
    with zipfile.ZipFile(datasets["av2av"]) as archive:
        names = set(archive.namelist())
        bases = {f"ball{i:02d}" for i in range(4)}
        assert names == {f"{b}{suffix}" for b in bases for suffix in ("_start.mp4", "_end.mp4", ".txt")}
        for base in sorted(bases):
            start, end = decode(archive.read(f"{base}_start.mp4")), decode(archive.read(f"{base}_end.mp4"))
            assert len(start["frames"]) == len(end["frames"]) == FRAMES + SPARE_FRAMES
            start_touches, start_onsets = check_sound_follows_picture(start)
            end_touches, end_onsets = check_sound_follows_picture(end)
            assert start_touches == end_touches
            np.testing.assert_allclose(start_onsets, end_onsets, atol=0.5 / FPS)
            # picture: the end is the start with its colours inverted
            start_rgb, end_rgb = start["frames"].astype(int), end["frames"].astype(int)
            assert np.abs(end_rgb - (255 - start_rgb)).mean() < 4 < 60 < np.abs(end_rgb - start_rgb).mean()
            # sound: the end's clicks are an octave above the start's
            colour = nearest_colour_name(ball_colour(start["frames"]))
            assert nearest_colour_name(255 - ball_colour(end["frames"])) == colour
            start_pitch = dominant_frequency(start["audio"], start["rate"], start_onsets[0])
            end_pitch = dominant_frequency(end["audio"], end["rate"], end_onsets[0])
            assert start_pitch == pytest.approx(COLOURS[colour][1], rel=0.05)
            assert end_pitch == pytest.approx(2 * start_pitch, rel=0.05)
            caption = archive.read(f"{base}.txt").decode()
            assert colour in caption and "octave higher" in caption


def test_defaults_give_twelve_clips_long_enough_for_their_frame_count(tmp_path):
    path = demo_data.write_demo_dataset("v2a", tmp_path / "demo.zip")
    with zipfile.ZipFile(path) as archive:
        videos = [name for name in archive.namelist() if name.endswith(".mp4")]
        assert len(videos) == 12
        for name in videos:
            clip = decode(archive.read(name))
            assert len(clip["frames"]) >= 49 and clip["frames"].shape[1:3] == (192, 192)
            assert clip["audio"] is not None


def test_same_seed_same_bytes_other_seed_other_clips(tmp_path):
    def build(name, seed):
        return demo_data.write_demo_dataset("v2a", tmp_path / name, clips=2, frames=9, size=(64, 64),
                                            seed=seed).read_bytes()
    assert build("a.zip", 5) == build("b.zip", 5)
    assert build("c.zip", 6) != build("a.zip", 5)


def test_validation_clips(tmp_path):
    silent = decode(demo_data.write_validation_clip(tmp_path / "v.mp4", "v2a", frames=FRAMES,
                                                    size=SIZE).read_bytes())
    assert silent["audio"] is None and len(silent["frames"]) >= FRAMES
    reference = decode(demo_data.write_validation_clip(tmp_path / "r.mp4", "av2av", frames=FRAMES,
                                                       size=SIZE).read_bytes())
    touches, _ = check_sound_follows_picture(reference)
    plan = demo_data.validation_plan(FRAMES)
    assert touches == touch_frames(silent["frames"]) == demo_data.bounce_frames(plan)
    dataset_motions = {(c.period_x, c.period_y, c.phase_x, c.phase_y)
                       for c in demo_data.plan_clips(12, FRAMES, seed=0)}
    assert (plan.period_x, plan.period_y, plan.phase_x, plan.phase_y) not in dataset_motions
    sounding = decode(demo_data.write_validation_clip(tmp_path / "s.mp4", "a2v", frames=FRAMES,
                                                      size=SIZE).read_bytes())
    assert sounding["audio"] is not None  # a2v: the sound is what a preview is made from
    with pytest.raises(ValueError, match="unknown mode"):
        demo_data.write_validation_clip(tmp_path / "x.mp4", "t2v")
