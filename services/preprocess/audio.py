"""A clip's audio over the same time window as its frames: stereo, 16 kHz, float32 [2, samples].

* Channels: mono is duplicated into both channels; stereo is kept; any other layout (5.1, 7.1,
  ...) is downmixed to stereo by FFmpeg's standard matrix (swresample).
* Timing: samples are placed by their timestamps relative to the first video frame, so a track
  that starts late (Opus pre-skip, a delayed track) stays in sync; where the track does not cover
  the window the audio is silence. Gaps in the middle of a track are not re-timed.
* Stretching (auto_scale_input on a short clip, see fitting.py): the audio is fitted to the same
  duration as the frames. With pitch preserved (av2av when audio_preserve_pitch, and always for
  v2a, whose soundtrack is the learning target and should keep its real pitch) FFmpeg's `atempo`
  filter is used; without, the samples are resampled (slower and lower, like tape).
* Levels: `normalize` scales the peak to NORMALIZED_PEAK (av2av audio_normalize); otherwise
  samples are only clipped to [-1, 1] (a downmix can exceed it)."""

from fractions import Fraction

import av
import av.filter
import numpy as np

from avlora.stage import UserError
from services.preprocess.fitting import SEEK_AFTER_S, Window
from services.preprocess.probe import MediaInfo

SAMPLE_RATE = 16000      # the audio VAE's rate (avlora.model.encode.AUDIO_SAMPLE_RATE)
NORMALIZED_PEAK = 0.95   # about -0.45 dBFS
SILENCE_PEAK = 1e-4      # -80 dBFS: below this a window is digital silence
ATEMPO_MIN = 0.5         # one atempo filter slows down by at most 2x; chained for more


def fit_audio(info: MediaInfo, window: Window, normalize: bool, preserve_pitch: bool = True) -> np.ndarray:
    """The window's audio, stretched to window.target_seconds: float32 [2, target samples]."""
    length = round(window.target_seconds * SAMPLE_RATE)
    audio = read_audio(info, window.start, window.source_seconds)
    if window.source_seconds != window.target_seconds:
        audio = stretch_pitch_preserving(audio, window.speed) if preserve_pitch else resample_length(audio, length)
    audio = _exact_length(audio, length)
    peak = float(np.abs(audio).max(initial=0.0))
    if normalize and peak >= SILENCE_PEAK:
        return (audio * (NORMALIZED_PEAK / peak)).astype(np.float32)
    return np.clip(audio, -1.0, 1.0)


def is_silent(audio: np.ndarray) -> bool:
    return float(np.abs(audio).max(initial=0.0)) < SILENCE_PEAK


def read_audio(info: MediaInfo, start: float, seconds: float, rate: int = SAMPLE_RATE) -> np.ndarray:
    """[2, round(seconds * rate)] float32 of the audio track from `start` (seconds from the first
    video frame), decoded streaming: decoding stops at the window's end."""
    out = np.zeros((2, round(seconds * rate)), np.float32)
    absolute = info.video_start + start
    resampler = av.AudioResampler(format="fltp", layout="mono" if info.audio_channels == 1 else "stereo",
                                  rate=rate)
    position = None  # index in `out` of the next resampled sample
    try:
        with av.open(str(info.path), metadata_errors="ignore") as container:
            stream = container.streams.audio[0]
            if start > SEEK_AFTER_S:
                container.seek(int((absolute - SEEK_AFTER_S) / stream.time_base), stream=stream, backward=True)
            for frame in container.decode(stream):
                if position is None:
                    if frame.time is None:
                        continue
                    position = round((frame.time - absolute) * rate)
                for chunk in resampler.resample(frame):
                    position = _place(out, chunk.to_ndarray(), position)
                if position >= out.shape[1]:
                    return out
            for chunk in resampler.resample(None):
                position = _place(out, chunk.to_ndarray(), position)
    except av.error.FFmpegError as error:
        raise UserError(f"{info.name}: its audio could not be decoded ({error.strerror or type(error).__name__})") from None
    return out


def _place(out: np.ndarray, samples: np.ndarray, position: int) -> int:
    """Copies samples [channels, n] to out[:, position:] where they overlap; mono fills both channels."""
    begin, end = max(position, 0), min(position + samples.shape[1], out.shape[1])
    if end > begin:
        out[:, begin:end] = samples[:, begin - position:end - position]
    return position + samples.shape[1]


def stretch_pitch_preserving(audio: np.ndarray, speed: float) -> np.ndarray:
    """Plays `audio` at `speed` (0.5: twice as long) without changing its pitch (FFmpeg atempo)."""
    graph = av.filter.Graph()
    time_base = Fraction(1, SAMPLE_RATE)
    chain = [graph.add_abuffer(format="fltp", sample_rate=SAMPLE_RATE, layout="stereo", time_base=time_base)]
    for tempo in _atempo_steps(speed):
        chain.append(graph.add("atempo", f"{tempo:.6f}"))
    chain.append(graph.add("aformat", "sample_fmts=fltp:channel_layouts=stereo"))
    chain.append(graph.add("abuffersink"))
    for source, sink in zip(chain, chain[1:]):
        source.link_to(sink)
    graph.configure()
    pieces = []
    step = 4096
    for begin in range(0, audio.shape[1], step):
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio[:, begin:begin + step]), format="fltp",
                                           layout="stereo")
        frame.sample_rate, frame.pts, frame.time_base = SAMPLE_RATE, begin, time_base
        graph.push(frame)
        pieces.extend(_drain(graph))
    graph.push(None)
    pieces.extend(_drain(graph))
    return np.concatenate(pieces, axis=1) if pieces else np.zeros((2, 0), np.float32)


def _atempo_steps(speed: float) -> list[float]:
    steps = []
    while speed < ATEMPO_MIN:
        steps.append(ATEMPO_MIN)
        speed /= ATEMPO_MIN
    return steps + [speed]


def _drain(graph: av.filter.Graph) -> list[np.ndarray]:
    pieces = []
    while True:
        try:
            pieces.append(graph.pull().to_ndarray())
        except (av.error.BlockingIOError, av.error.EOFError):
            return pieces


def resample_length(audio: np.ndarray, length: int) -> np.ndarray:
    """Stretches `audio` to `length` samples by linear interpolation (pitch changes with speed)."""
    source = np.linspace(0, audio.shape[1] - 1, length)
    return np.stack([np.interp(source, np.arange(audio.shape[1]), channel) for channel in audio]).astype(np.float32)


def _exact_length(audio: np.ndarray, length: int) -> np.ndarray:
    if audio.shape[1] >= length:
        return audio[:, :length]
    return np.pad(audio, ((0, 0), (0, length - audio.shape[1])))
