"""Real media for tests, written with PyAV in milliseconds."""

import zipfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

# Container suffix -> (video codec, audio codec).
CODECS = {
    ".mp4": ("libx264", "aac"), ".mov": ("libx264", "aac"), ".mkv": ("libx264", "aac"),
    ".avi": ("mpeg4", "mp3"), ".webm": ("libvpx-vp9", "libopus"),
}
LAYOUTS = {1: "mono", 2: "stereo", 6: "5.1"}


def write_clip(path: str | Path, *, frames: int = 24, fps: float = 24, size: tuple[int, int] = (64, 48),
               audio_rate: int | None = 16000, audio_channels: int = 1, tone_hz: float = 440.0,
               variable_frame_rate: bool = False, seed: int = 0) -> Path:
    """Writes a clip of `frames` frames of moving colour at `fps`, (width, height) `size`, with a
    sine tone of the same duration (or no audio track when audio_rate is None)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    video_codec, audio_codec = CODECS[path.suffix.lower()]
    if audio_codec == "libopus":
        audio_rate = audio_rate and 48000
    width, height = size
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, 3)
    with av.open(str(path), "w") as container:
        rate = Fraction(fps).limit_denominator(1000)
        video = container.add_stream(video_codec, rate=rate)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        if variable_frame_rate:
            video.codec_context.time_base = Fraction(1, 1000)
        audio = None
        if audio_rate:
            audio = container.add_stream(audio_codec, rate=audio_rate, layout=LAYOUTS[audio_channels])
        pts_ms = 0
        for index in range(frames):
            image = np.empty((height, width, 3), np.uint8)
            image[:] = (base + index * 9) % 255
            image[:, : max(1, (index * width) // max(frames, 1))] = 255
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            if variable_frame_rate:
                frame.pts, frame.time_base = pts_ms, Fraction(1, 1000)
                pts_ms += int(1000 / fps * (0.5 if index % 2 else 1.5))
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        if audio is not None:
            t = np.arange(int(round(frames / fps * audio_rate))) / audio_rate
            _encode_sound(container, audio, (0.4 * np.sin(2 * np.pi * tone_hz * t)).astype(np.float32),
                          audio_channels, audio_rate)
    return path


def _encode_sound(container, audio, sound: np.ndarray, channels: int, rate: int) -> None:
    """Encodes a mono float32 sound into every channel of the `audio` stream."""
    chunk = audio.codec_context.frame_size or 1024
    for start in range(0, len(sound), chunk):
        planes = np.repeat(sound[None, start:start + chunk], channels, axis=0)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(planes), format="fltp", layout=LAYOUTS[channels])
        frame.sample_rate, frame.pts = rate, start
        for packet in audio.encode(frame):
            container.mux(packet)
    for packet in audio.encode():
        container.mux(packet)


def zip_files(zip_path: str | Path, files: dict[str, Path | bytes | str]) -> Path:
    """Writes a zip whose entries are name -> file on disk, bytes, or text."""
    zip_path = Path(zip_path)
    with zipfile.ZipFile(zip_path, "w") as archive:
        for name, content in files.items():
            if isinstance(content, Path):
                archive.write(content, name)
            else:
                archive.writestr(name, content)
    return zip_path


def write_events_clip(path: str | Path, events: list[float], *, sound_offset: float = 0.0, seconds: float = 4.0,
                      fps: float = 24, size: tuple[int, int] = (64, 48), audio_rate: int = 48000,
                      audio_channels: int = 2, level: float = 0.5, clip_at: float | None = None,
                      hum: float = 0.0) -> Path:
    """A clip whose picture flashes at each of `events` (seconds; white, fading over a few frames)
    and whose sound clicks `sound_offset` seconds after each flash (> 0: the sound is late). The
    clicks are `level` loud over a `hum` sine; `clip_at` hard-clips the sound at that level x 2
    (then written at half scale: the flat tops sit at full scale)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = size
    count = round(seconds * fps)
    total = round(seconds * audio_rate)
    t = np.arange(total) / audio_rate
    sound = hum * np.sin(2 * np.pi * 220 * t)
    for event in events:
        start = event + sound_offset
        after = t - start
        inside = (after >= 0) & (after < 0.03)
        sound[inside] += level * np.sin(2 * np.pi * 2000 * after[inside]) * np.exp(-after[inside] / 0.008)
    if clip_at is not None:
        sound = np.clip(sound, -clip_at, clip_at) / clip_at
    sound = np.clip(sound, -1, 1).astype(np.float32)
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        audio = container.add_stream("aac", rate=audio_rate, layout=LAYOUTS[audio_channels])
        for index in range(count):
            since = [index - round(event * fps) for event in events if index >= round(event * fps)]
            brightness = 20 + 220 * 0.5 ** min(since) if since else 20
            image = np.full((height, width, 3), int(brightness), np.uint8)
            for packet in video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        _encode_sound(container, audio, sound, audio_channels, audio_rate)
    return path
