"""Dataset diagnostics: the audio figures of every training clip (avlora.audio_figures) over the part
used for training, and the warnings they raise (out of sync, clipped, very quiet, mono, a low
sample rate). Warnings never stop a job; they land in each ClipReport (`avlora inspect`, the
preprocess report) and one summary line in the job's events."""

import av
import numpy as np

from avlora.audio_figures import audio_figures, warnings
from avlora.stage import UserError
from avlora.v1 import dataset_pb2, figures_pb2
from services.preprocess.audio import read_audio
from services.preprocess.cancel import ShouldStop, stop_if_asked
from services.preprocess.fitting import SEEK_AFTER_S
from services.preprocess.items import ClipSource, TrainingItem
from services.preprocess.probe import MediaInfo

GREY_WIDTH = 64  # the picture's events are measured on frames this wide


def grey_frames(info: MediaInfo, start: float, seconds: float,
                should_stop: ShouldStop | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(small grey frames uint8 [F, h, GREY_WIDTH], their times in seconds from `start`) of every
    source frame in [start, start + seconds)."""
    height = max(8, round(GREY_WIDTH * info.height / max(info.width, 1)) // 2 * 2)
    frames, times = [], []
    try:
        with av.open(str(info.path), metadata_errors="ignore") as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            if start > SEEK_AFTER_S:
                offset = info.video_start + start - SEEK_AFTER_S
                container.seek(int(offset / stream.time_base), stream=stream, backward=True)
            for frame in container.decode(stream):
                stop_if_asked(should_stop)
                if frame.time is None:
                    continue
                now = frame.time - info.video_start - start
                if now >= seconds:
                    break
                if now >= -1e-6:
                    frames.append(frame.to_ndarray(format="gray", width=GREY_WIDTH, height=height))
                    times.append(now)
    except av.error.FFmpegError as error:
        raise UserError(f"{info.name} could not be decoded ({error.strerror or type(error).__name__})") from None
    return np.array(frames, np.uint8).reshape(-1, height, GREY_WIDTH), np.array(times)


def source_figures(source: ClipSource, should_stop: ShouldStop | None = None) -> figures_pb2.AudioFigures:
    """The figures of the part of a clip used for training, at the clip's own sample rate."""
    info, window = source.info, source.window
    audio = read_audio(info, window.start, window.source_seconds, info.audio_sample_rate)
    frames, times = grey_frames(info, window.start, window.source_seconds, should_stop)
    return audio_figures(audio, info.audio_sample_rate, frames, times, name=source.label, source="training")


def source_warnings(source: ClipSource, figures: figures_pb2.AudioFigures) -> list[str]:
    info = source.info
    return warnings(figures, info.native_fps, info.audio_channels, info.audio_sample_rate)


def diagnose(items: list[TrainingItem], report: dataset_pb2.DatasetReport,
             should_stop: ShouldStop | None = None) -> None:
    """Adds the figures and warnings of every item to its ClipReport (av2av: the target's figures;
    the warnings of both clips, each naming its file)."""
    clips = {clip.name: clip for clip in report.clips}
    for item in items:
        clip = clips[item.name]
        for source in (item.target, item.reference):
            if source is None:
                continue
            try:
                figures = source_figures(source, should_stop)
            except UserError as error:  # fitting names it as an error
                clip.warnings.append(f"sound checks skipped: {error}")
                continue
            if source is item.target:
                clip.figures.CopyFrom(figures)
            found = source_warnings(source, figures)
            clip.warnings.extend(found if source.label == item.name else [f"{source.label}: {w}" for w in found])


def warnings_summary(report: dataset_pb2.DatasetReport) -> str:
    """One line for the job's events: how many clips have warnings, and the first few."""
    used = [clip for clip in report.clips if clip.accepted]
    flagged = [clip for clip in used if clip.warnings]
    if not flagged:
        return f"sound checks: no warnings on the {len(used)} clips used"
    shown = "; ".join(f"{clip.name}: {', '.join(clip.warnings)}" for clip in flagged[:3])
    more = f" (and {len(flagged) - 3} more clips)" if len(flagged) > 3 else ""
    return f"sound checks: warnings on {len(flagged)} of the {len(used)} clips used: {shown}{more}"
