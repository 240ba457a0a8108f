"""A small synthetic dataset whose sound really follows the picture, so learning can be seen.

Each clip is a ball bouncing in a box. Every frame on which the ball touches a wall carries a click
on the soundtrack that starts exactly at that frame's time; the ball's colour sets the click's pitch.
Speeds and start positions differ per clip. For a mode of pairs (av2av) the `_end` clip is the
`_start` with its colours inverted and its clicks an octave higher, with the same timing."""

import tempfile
import zipfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from avlora.modes import MODES, Mode

AUDIO_RATE = 16000
SPARE_FRAMES = 4  # clips are `frames + SPARE_FRAMES` long, so they pass the "too short" rule
BORDER = 4  # width in pixels of the box's wall
BACKGROUND, WALL = (30, 30, 30), (190, 190, 190)
# colour name -> (RGB, click pitch in Hz, how the pitch is described in captions)
COLOURS: dict[str, tuple[tuple[int, int, int], float, str]] = {
    "blue": ((50, 90, 240), 440.0, "low"),
    "green": ((40, 200, 60), 880.0, "medium"),
    "yellow": ((240, 210, 40), 1320.0, "high"),
    "red": ((230, 40, 40), 1760.0, "very high"),
}
INVERTED_NAMES = {"blue": "an orange", "green": "a magenta", "yellow": "a deep blue", "red": "a cyan"}
CLICK_DECAY_SECONDS = 0.008
PERIODS = range(6, 14)  # frames the ball takes to cross the box, per axis


@dataclass(frozen=True)
class BallClip:
    """One clip's plan: the ball's colour and, per axis, the frames it takes to cross the box and
    where in that crossing it starts."""
    name: str
    colour: str
    period_x: int
    period_y: int
    phase_x: int
    phase_y: int
    frames: int


def plan_clips(count: int, frames: int, seed: int, stream: int = 0) -> list[BallClip]:
    """The clips of a dataset, deterministic for (seed, stream); every colour appears in turn."""
    rng = np.random.default_rng([seed, stream])
    names = list(COLOURS)
    clips = []
    for index in range(count):
        period_x, period_y = (int(p) for p in rng.choice(PERIODS, size=2, replace=False))
        clips.append(BallClip(
            name=f"ball{index:02d}", colour=names[(index + seed) % len(names)],
            period_x=period_x, period_y=period_y,
            phase_x=int(rng.integers(1, period_x)), phase_y=int(rng.integers(1, period_y)),
            frames=frames + SPARE_FRAMES))
    return clips


def _wall_position(frame: int, period: int, phase: int) -> float:
    """Where the ball is across one axis, 0 (one wall) to 1 (the other): a triangle wave that
    touches a wall exactly on the frames where (frame + phase) is a multiple of period."""
    step = (frame + phase) % (2 * period)
    return (step if step <= period else 2 * period - step) / period


def bounce_frames(clip: BallClip) -> list[int]:
    """The frames on which the ball touches a wall (and the soundtrack clicks)."""
    return [f for f in range(clip.frames)
            if (f + clip.phase_x) % clip.period_x == 0 or (f + clip.phase_y) % clip.period_y == 0]


def bounce_times(clip: BallClip, fps: int) -> list[float]:
    """The times in seconds at which the soundtrack clicks."""
    return [frame / fps for frame in bounce_frames(clip)]


def ball_radius(size: tuple[int, int]) -> int:
    return max(3, min(size) // 10)


def render_video(clip: BallClip, size: tuple[int, int], inverted: bool = False) -> np.ndarray:
    """The clip's frames, (frames, height, width, 3) uint8 RGB."""
    width, height = size
    radius = ball_radius(size)
    box = np.empty((height, width, 3), np.uint8)
    box[:] = WALL
    box[BORDER:height - BORDER, BORDER:width - BORDER] = BACKGROUND
    video = np.repeat(box[None], clip.frames, axis=0)
    offsets = np.arange(2 * radius) + 0.5 - radius
    disk = offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius ** 2
    travel_x, travel_y = width - 2 * (BORDER + radius), height - 2 * (BORDER + radius)
    for frame in range(clip.frames):  # top-left corner of the ball's square, on whole pixels
        left = BORDER + round(travel_x * _wall_position(frame, clip.period_x, clip.phase_x))
        top = BORDER + round(travel_y * _wall_position(frame, clip.period_y, clip.phase_y))
        video[frame, top:top + 2 * radius, left:left + 2 * radius][disk] = COLOURS[clip.colour][0]
    return 255 - video if inverted else video


def render_audio(clip: BallClip, fps: int, octave_up: bool = False) -> np.ndarray:
    """The clip's soundtrack, (2, samples) stereo float32 at AUDIO_RATE: a decaying sine click at
    each bounce, panned to where the ball is across the box (a left-wall bounce is louder on the
    left; never silent on either side)."""
    total = int(round(clip.frames / fps * AUDIO_RATE))
    pitch = COLOURS[clip.colour][1] * (2 if octave_up else 1)
    length = int(min(0.04, 0.9 / fps) * AUDIO_RATE)
    t = np.arange(length) / AUDIO_RATE
    click = 0.6 * np.sin(2 * np.pi * pitch * t) * np.exp(-t / CLICK_DECAY_SECONDS)
    audio = np.zeros((2, total), np.float32)
    for frame in bounce_frames(clip):
        start = int(round(frame / fps * AUDIO_RATE))
        end = min(total, start + length)
        angle = np.pi / 4 * (0.5 + _wall_position(frame, clip.period_x, clip.phase_x))  # pi/8 .. 3pi/8
        audio[0, start:end] += np.cos(angle) * click[:end - start]
        audio[1, start:end] += np.sin(angle) * click[:end - start]
    return audio


def write_clip(path: Path, video: np.ndarray, audio: np.ndarray | None, fps: int) -> Path:
    """Writes frames (and a stereo AAC track of (2, samples) audio unless it is None) to an mp4 with PyAV."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps), options={"preset": "veryfast"})
        stream.height, stream.width = video.shape[1:3]
        stream.pix_fmt = "yuv420p"
        sound = None if audio is None else container.add_stream(
            "aac", rate=AUDIO_RATE, layout="stereo", options={"aac_coder": "fast"})
        for image in video:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
        if sound is not None:
            chunk = sound.codec_context.frame_size or 1024
            for start in range(0, audio.shape[1], chunk):
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio[:, start:start + chunk]),
                                                   format="fltp", layout="stereo")
                frame.sample_rate, frame.pts = AUDIO_RATE, start
                container.mux(sound.encode(frame))
            container.mux(sound.encode())
    return path


def caption(clip: BallClip, mode: str) -> str:
    pitch = COLOURS[clip.colour][2]
    if not _mode(mode).pairs:
        return f"a {clip.colour} ball bouncing in a dark box, a {pitch} click on every bounce"
    return (f"a {clip.colour} ball bouncing in a dark box with {pitch} clicks becomes "
            f"{INVERTED_NAMES[clip.colour]} ball in a light box, its clicks an octave higher")


def _mode(name: str) -> Mode:
    if name not in MODES:
        raise ValueError(f"unknown mode {name!r}: expected one of {', '.join(repr(m) for m in MODES)}")
    return MODES[name]


def write_demo_dataset(mode: str, out_zip: Path, *, clips: int = 12,
                       frames: int = 49, fps: int = 24, size: tuple[int, int] = (192, 192),
                       seed: int = 0) -> Path:
    """Writes the dataset zip: single clips `<name>.mp4` + `<name>.txt`; pairs (av2av)
    `<name>_start.mp4`, `<name>_end.mp4` + `<name>.txt`. Every clip has an AAC track. Returns out_zip."""
    pairs = _mode(mode).pairs
    out_zip = Path(out_zip)
    out_zip.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as work, zipfile.ZipFile(out_zip, "w") as archive:
        def add(name: str, data: bytes) -> None:  # fixed timestamps keep the zip deterministic
            archive.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), data)

        for clip in plan_clips(clips, frames, seed):
            video, audio = render_video(clip, size), render_audio(clip, fps)
            files = {f"{clip.name}.mp4": (video, audio)}
            if pairs:
                files = {f"{clip.name}_start.mp4": (video, audio),
                         f"{clip.name}_end.mp4": (render_video(clip, size, inverted=True),
                                                  render_audio(clip, fps, octave_up=True))}
            for name, (frames_rgb, sound) in files.items():
                add(name, write_clip(Path(work) / name, frames_rgb, sound, fps).read_bytes())
            add(f"{clip.name}.txt", caption(clip, mode).encode())
    return out_zip


def validation_plan(frames: int = 49, seed: int = 0) -> BallClip:
    """The plan of write_validation_clip's clip, drawn apart from the dataset's (its own speeds
    and start), so bounce_frames(validation_plan(...)) says where its clicks belong."""
    return plan_clips(1, frames, seed, stream=1)[0]


def write_validation_clip(path: Path, mode: str, *, frames: int = 49,
                          fps: int = 24, size: tuple[int, int] = (192, 192), seed: int = 0) -> Path:
    """A fresh clip for validation, with what the mode's previews are made from: a silent video when
    only the picture conditions (v2a: the model adds its sound), else a clip with its sound (a2v:
    the model draws its picture; av2av: the model transforms it). Returns path."""
    sounding = any(key.endswith("audio") for key in _mode(mode).conditioning)
    clip = validation_plan(frames, seed)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    audio = render_audio(clip, fps) if sounding else None
    return write_clip(path, render_video(clip, size), audio, fps)
