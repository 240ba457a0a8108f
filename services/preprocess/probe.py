"""Probing a clip with PyAV: does it open, does it have a video stream and an audio track, how long
is it. Every number comes from the packets themselves (one demux pass, no decoding beyond the
first frame of each stream), so mkv/webm files that carry no stream duration are measured the same
way as mp4, and a truncated file is measured by what is really in it."""

from dataclasses import dataclass, field, replace
from pathlib import Path

import av

from avlora.stage import UserError
from services.preprocess.cancel import ShouldStop, stop_if_asked


@dataclass(frozen=True)
class MediaInfo:
    """A probed clip. Times are seconds from the first video frame."""

    name: str                 # the file's name inside the archive (for messages)
    # where the file is read from now (a scratch copy with an object store): not part of what a
    # cached sample was made from, so not in its repr
    path: Path = field(repr=False, compare=False)
    width: int                # as displayed (a rotated phone clip has its sides swapped)
    height: int
    video_start: float        # the first video frame's timestamp in the container (seconds)
    duration: float           # first video frame to the end of the last one
    native_fps: float
    native_frames: int        # video packets (one frame each)
    audio_channels: int = 0   # 0: no audio track
    audio_sample_rate: int = 0
    audio_start: float = 0.0
    audio_end: float = 0.0

    @property
    def has_audio(self) -> bool:
        return self.audio_channels > 0 and self.audio_end > self.audio_start

    def audio_covers(self, start: float, end: float) -> bool:
        """True when the audio track covers at least half of [start, end)."""
        covered = min(end, self.audio_end) - max(start, self.audio_start)
        return self.has_audio and covered >= 0.5 * (end - start)


def probe_media(path: str | Path, name: str, need_video: bool = True,
                should_stop: ShouldStop | None = None) -> MediaInfo:
    """Probes one clip. Raises UserError naming the file when it cannot be read, is corrupt or
    truncated, or has no video stream (unless need_video is False: an audio file, whose times
    then count from its first sample). A missing audio track is not an error here (see
    `require_audio`): a v2a validation video is silent by design. `should_stop` is asked before
    each packet: JobCancelled when it says so."""
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            video = container.streams.video[0] if container.streams.video else None
            audio = container.streams.audio[0] if container.streams.audio else None
            if video is None and need_video:
                raise UserError(f"{name} has no video stream")
            if video is None and audio is None:
                raise UserError(f"{name} has no audio track")
            info = _scan_packets(container, video, audio, name, Path(path), should_stop)
            rotation = _decode_first_frames(container, video, audio if info.has_audio else None, name)
            if rotation % 180:
                info = replace(info, width=info.height, height=info.width)
            return info
    except av.error.FFmpegError as error:
        raise UserError(f"{name} is unreadable or corrupt ({_reason(error)})") from None


def require_audio(info: MediaInfo) -> None:
    if not info.has_audio:
        raise UserError(f"{info.name} has no audio track")


def _scan_packets(container, video, audio, name: str, path: Path, should_stop: ShouldStop | None) -> MediaInfo:
    first_video = last_video_end = audio_start = audio_end = None
    frames = 0
    fallback_frame = 1.0 / float(video.average_rate or video.guessed_rate or 24) if video else 0.0
    for packet in container.demux([stream for stream in (video, audio) if stream is not None]):
        stop_if_asked(should_stop)
        if packet.pts is None or packet.size == 0:
            continue
        start = float(packet.pts * packet.time_base)
        if packet.stream is video:
            frames += 1
            end = start + (float(packet.duration * packet.time_base) if packet.duration else fallback_frame)
            first_video = start if first_video is None else min(first_video, start)
            last_video_end = end if last_video_end is None else max(last_video_end, end)
        else:
            end = start + float((packet.duration or 0) * packet.time_base)
            audio_start = start if audio_start is None else min(audio_start, start)
            audio_end = end if audio_end is None else max(audio_end, end)
    channels = audio.codec_context.channels if audio is not None and audio_start is not None else 0
    if video is None:  # an audio file: its own timeline
        if not channels:
            raise UserError(f"{name} has no audio track")
        first_video, last_video_end = audio_start, audio_end
    elif frames == 0:
        raise UserError(f"{name} has no video frames")
    duration = last_video_end - first_video
    rate = video and (video.average_rate or video.guessed_rate)
    return MediaInfo(
        name=name, path=path, width=video.codec_context.width if video else 0,
        height=video.codec_context.height if video else 0, video_start=first_video, duration=duration,
        native_fps=float(rate) if rate else (frames / duration if frames else 0.0), native_frames=frames,
        audio_channels=channels, audio_sample_rate=audio.codec_context.sample_rate if channels else 0,
        audio_start=(audio_start - first_video) if channels else 0.0,
        audio_end=(audio_end - first_video) if channels else 0.0)


def _decode_first_frames(container, video, audio, name: str) -> int:
    """Decodes the first frame of each stream (a file whose headers parse but whose data does not
    decode is corrupt) and returns the video's display rotation in degrees."""
    rotation = 0
    for stream, kind in ((video, "video"), (audio, "audio")):
        if stream is None:
            continue
        container.seek(0, stream=stream)
        frame = next(iter(container.decode(stream)), None)
        if frame is None:
            raise UserError(f"{name} is corrupt: its {kind} stream does not decode")
        if stream is video:
            rotation = round(frame.rotation or 0)
    return rotation


def _reason(error: av.error.FFmpegError) -> str:
    return (error.strerror or type(error).__name__).strip().rstrip(".")
