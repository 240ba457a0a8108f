"""Audio figures of one sound, against its picture where it has one (docs/evidence.md):

* integrated loudness, ITU-R BS.1770 (pyloudnorm), in LUFS;
* sample peak in dBFS and the share of samples at full scale (clipping);
* the share of silence (50 ms windows under -60 dBFS);
* audio-video sync: the sound's onset strength (spectral flux of a log-magnitude STFT, scipy) and the
  picture's events (the rise of the mean absolute difference between consecutive frames), each
  where it stands out of its own background, on one 4 ms grid, cross-correlated over +-1 s. The best shift is the offset (> 0: the sound comes late),
  the normalised correlation there the confidence (0: nothing to line up).

Plain functions on numpy arrays: audio is float [channels, samples] in [-1, 1]; frames are grey
uint8 [F, H, W] with their times in seconds. `warnings` turns a clip's figures into the dataset
diagnostics; `spectrogram_png` draws previews side by side."""

from pathlib import Path

import cv2
import numpy as np
import pyloudnorm
from scipy import ndimage, signal

from avlora.v1 import figures_pb2

SILENT_LUFS = -70.0        # BS.1770's absolute gate: a sound with nothing above it reads as this
SILENT_DBFS = -120.0
CLIP_LEVEL = 0.99          # |sample| at or above this counts as full scale (decoders overshoot a little)
SILENCE_DBFS = -60.0
SILENCE_WINDOW_S = 0.05
GRID_HZ = 250              # the sync grid: 4 ms
SYNC_RANGE_S = 1.0
SMOOTHING_S = 0.02         # both onset signals are blurred by this (a video event is known to a frame)
ONSET_WINDOW_S = 0.016
OUTLIER_MADS = 4.0
MIN_EVENTS = 2             # a lone sound onset or picture event gives no sync figure

# Dataset diagnostics (warnings, the job still runs).
CLIPPED_SHARE_WARNING = 0.001
QUIET_LUFS_WARNING = -50.0
LOW_SAMPLE_RATE = 16000    # the audio VAE's rate: below it the top of the model's band is empty
SYNC_CONFIDENCE_WARNING = 0.3


def loudness_lufs(audio: np.ndarray, rate: int) -> float:
    """Integrated loudness (ITU-R BS.1770-4 with its gating), SILENT_LUFS at most quiet."""
    seconds = audio.shape[1] / rate
    if seconds <= 0:
        return SILENT_LUFS
    meter = pyloudnorm.Meter(rate, block_size=min(0.4, seconds))  # previews can be shorter than a block
    with np.errstate(divide="ignore"):
        value = meter.integrated_loudness(np.ascontiguousarray(audio.T, dtype=np.float64))
    return max(SILENT_LUFS, float(value)) if np.isfinite(value) else SILENT_LUFS


def peak_dbfs(audio: np.ndarray) -> float:
    peak = float(np.abs(audio).max(initial=0.0))
    return max(SILENT_DBFS, 20 * np.log10(peak)) if peak > 0 else SILENT_DBFS


def clipped_share(audio: np.ndarray) -> float:
    return float(np.mean(np.abs(audio) >= CLIP_LEVEL)) if audio.size else 0.0


def silence_share(audio: np.ndarray, rate: int) -> float:
    window = max(1, round(SILENCE_WINDOW_S * rate))
    count = audio.shape[1] // window
    if count == 0:
        return 1.0
    blocks = audio[:, :count * window].reshape(audio.shape[0], count, window)
    rms = np.sqrt(np.mean(blocks.astype(np.float64) ** 2, axis=(0, 2)))
    return float(np.mean(rms < 10 ** (SILENCE_DBFS / 20)))


def _standing_out(values: np.ndarray) -> np.ndarray:
    """What rises above the signal's own background (its median plus OUTLIER_MADS median absolute
    deviations): a steady tone's codec noise or a steadily moving picture leaves nothing."""
    if not len(values):
        return values
    median = np.median(values)
    return np.maximum(values - median - OUTLIER_MADS * np.median(np.abs(values - median)), 0)


def onset_strength(audio: np.ndarray, rate: int, seconds: float) -> np.ndarray:
    """Spectral flux of the mono mix on the sync grid (round(seconds * GRID_HZ) values)."""
    mono = audio.mean(axis=0)
    hop = max(1, round(rate / GRID_HZ))
    size = max(hop * 2, round(ONSET_WINDOW_S * rate))
    grid = np.arange(round(seconds * GRID_HZ)) / GRID_HZ
    if len(mono) < size + hop:  # fewer than two windows: no change to measure
        return np.zeros(len(grid))
    # Windows wholly inside the sound (no zero padding): the sound's start is no onset.
    _, times, spectrum = signal.stft(mono, rate, nperseg=size, noverlap=size - hop, boundary=None, padded=False)
    log = np.log1p(100 * np.abs(spectrum))
    flux = _standing_out(np.maximum(np.diff(log, axis=1), 0).sum(axis=0))
    return np.interp(grid, times[1:], flux, left=0.0, right=0.0)  # times: the windows' centres


def picture_events(frames: np.ndarray, times: np.ndarray, seconds: float) -> np.ndarray:
    """Abrupt changes of the picture on the sync grid: where the mean absolute difference between
    consecutive frames rises, its rise, at the later frame's time."""
    events = np.zeros(round(seconds * GRID_HZ))
    if len(frames) < 3:
        return events
    change = np.abs(np.diff(frames.astype(np.int16), axis=0)).mean(axis=(1, 2))
    rise = _standing_out(np.maximum(np.diff(change, prepend=change[0]), 0))  # the first change is no event
    slots = np.round(np.asarray(times[1:]) * GRID_HZ).astype(int)
    inside = (slots >= 0) & (slots < len(events))
    np.add.at(events, slots[inside], rise[inside])
    return events


def _event_count(values: np.ndarray, apart: int) -> int:
    """Peaks at least a tenth of the highest and `apart` grid steps apart."""
    if not values.any():
        return 0
    return len(signal.find_peaks(values, height=0.1 * values.max(), distance=max(1, apart))[0])


def sync_offset(audio: np.ndarray, rate: int, frames: np.ndarray, times: np.ndarray) -> tuple[float, float]:
    """(offset ms, confidence): the shift of the sound against the picture that best lines its
    onsets up with the picture's events (> 0: the sound is late), searched over +-SYNC_RANGE_S."""
    seconds = audio.shape[1] / rate
    sigma = SMOOTHING_S * GRID_HZ
    sound = ndimage.gaussian_filter1d(onset_strength(audio, rate, seconds), sigma)
    picture = ndimage.gaussian_filter1d(picture_events(frames, times, seconds), sigma)
    apart = round(2 * float(np.median(np.diff(times))) * GRID_HZ) if len(times) > 1 else 1
    if min(_event_count(sound, apart), _event_count(picture, apart)) < MIN_EVENTS:
        return 0.0, 0.0
    sound, picture = sound - sound.mean(), picture - picture.mean()
    norm = np.linalg.norm(sound) * np.linalg.norm(picture)
    if norm < 1e-9:
        return 0.0, 0.0
    correlation = signal.correlate(sound, picture, mode="full") / norm  # index len-1 is no shift
    reach = min(round(SYNC_RANGE_S * GRID_HZ), len(picture) - 1)
    middle = len(picture) - 1
    window = correlation[middle - reach:middle + reach + 1]
    best = int(np.argmax(window))
    # Confidence: how far the best alignment stands above any other (more than two frames away):
    # a lone event, periodic events or noise line up about as well at other shifts.
    lags = np.arange(len(window))
    others = window[np.abs(lags - best) > apart]
    runner_up = max(float(others.max(initial=0.0)), 0.0)
    return (best - reach) * 1000 / GRID_HZ, float(np.clip(window[best] - runner_up, 0.0, 1.0))


def audio_figures(audio: np.ndarray, rate: int, frames: np.ndarray | None = None, times: np.ndarray | None = None,
                  name: str = "", source: str = "") -> figures_pb2.AudioFigures:
    """Every figure of one sound; the sync figures only with its picture (frames and their times)."""
    figures = figures_pb2.AudioFigures(
        name=name, source=source, loudness_lufs=loudness_lufs(audio, rate), peak_dbfs=peak_dbfs(audio),
        clipped_share=clipped_share(audio), silence_share=silence_share(audio, rate))
    if frames is not None and len(frames):
        figures.sync_offset_ms, figures.sync_confidence = sync_offset(audio, rate, frames, times)
    return figures


def warnings(figures: figures_pb2.AudioFigures, fps: float, channels: int, sample_rate: int) -> list[str]:
    """A training clip's sound problems (the job still runs): out of sync by more than a frame at
    `fps`, clipped, very quiet, mono, a low sample rate."""
    found = []
    offset = figures.sync_offset_ms
    if figures.sync_confidence >= SYNC_CONFIDENCE_WARNING and fps and abs(offset) > 1000 / fps:
        found.append(f"sound {abs(offset):.0f} ms {'late' if offset > 0 else 'early'} against the picture "
                     f"(sync confidence {figures.sync_confidence:.2f})")
    if figures.clipped_share > CLIPPED_SHARE_WARNING:
        found.append(f"clipped audio ({100 * figures.clipped_share:.1f}% of samples at full scale)")
    if figures.loudness_lufs < QUIET_LUFS_WARNING:
        found.append(f"very low level ({figures.loudness_lufs:.1f} LUFS, under {QUIET_LUFS_WARNING:.0f})")
    if channels == 1:
        found.append("mono sound (the LoRA learns identical left and right channels)")
    if 0 < sample_rate < LOW_SAMPLE_RATE:
        found.append(f"low sample rate ({sample_rate} Hz; the model hears up to {LOW_SAMPLE_RATE // 2} Hz)")
    return found


def spectrogram_image(audio: np.ndarray, rate: int, height: int = 192, pixels_per_second: int = 200) -> np.ndarray:
    """The mono mix's spectrogram as a BGR image (time to the right, frequency up, -100..0 dB)."""
    mono = audio.mean(axis=0)
    size = min(1024, max(16, len(mono)))
    _, _, power = signal.spectrogram(mono, rate, nperseg=size, noverlap=size * 3 // 4)
    decibels = 10 * np.log10(np.maximum(power, 1e-12) * 2 / size)
    levels = np.clip((decibels + 100) / 100 * 255, 0, 255).astype(np.uint8)[::-1]
    width = max(64, round(audio.shape[1] / rate * pixels_per_second))
    return cv2.applyColorMap(cv2.resize(levels, (width, height), interpolation=cv2.INTER_AREA), cv2.COLORMAP_MAGMA)


def _labelled(image: np.ndarray, label: str) -> np.ndarray:
    header = np.full((24, image.shape[1], 3), 255, np.uint8)
    cv2.putText(header, label, (4, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return np.vstack([header, image])


def spectrogram_png(path: str | Path, rows: list[tuple[str, np.ndarray, np.ndarray]], rate: int) -> Path:
    """One PNG: per row (label, the LoRA's audio, the base model's audio) two labelled spectrograms
    side by side, the LoRA's on the left."""
    images = []
    for label, lora, base in rows:
        pair = [_labelled(spectrogram_image(lora, rate), f"{label}: LoRA"),
                _labelled(spectrogram_image(base, rate), f"{label}: base model")]
        gap = np.full((pair[0].shape[0], 8, 3), 255, np.uint8)
        images.append(np.hstack([pair[0], gap, pair[1]]))
    width = max(image.shape[1] for image in images)
    images = [np.pad(image, ((0, 8), (0, width - image.shape[1]), (0, 0)), constant_values=255) for image in images]
    encoded, png = cv2.imencode(".png", np.vstack(images))
    if not encoded:
        raise ValueError("the spectrograms could not be encoded as PNG")
    Path(path).write_bytes(png.tobytes())
    return Path(path)
