"""Preview files with PyAV: one WAV of generated audio (v2a), one MP4 reel whose soundtrack is the
generated audio (av2av). Every clip's audio is cut or padded to its video's exact duration."""

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch


def fit_duration(waveform: torch.Tensor, seconds: float, rate: int) -> np.ndarray:
    """[channels, n] float -> [channels, round(seconds * rate)] float32, zero-padded or cut."""
    samples = round(seconds * rate)
    out = np.zeros((waveform.shape[0], samples), np.float32)
    length = min(samples, waveform.shape[1])
    out[:, :length] = waveform[:, :length].float().clamp(-1, 1).numpy()
    return out


def _write_audio(container, stream, waveform: np.ndarray, rate: int) -> None:
    """Encodes stereo float [2, n] in the codec's frame size."""
    chunk = stream.codec_context.frame_size or 1024
    for start in range(0, waveform.shape[1], chunk):
        piece = np.ascontiguousarray(waveform[:, start:start + chunk])
        if stream.codec_context.format.name == "s16":
            frame = av.AudioFrame.from_ndarray((piece.T.reshape(1, -1) * 32767).astype(np.int16),
                                               format="s16", layout="stereo")
        else:
            frame = av.AudioFrame.from_ndarray(piece, format="fltp", layout="stereo")
        frame.sample_rate, frame.pts = rate, start
        container.mux(stream.encode(frame))
    container.mux(stream.encode())


def write_wav(path: str | Path, clips: list[np.ndarray], rate: int) -> Path:
    """Concatenates stereo clips [2, n] into one 16-bit WAV."""
    with av.open(str(path), "w", format="wav") as container:
        stream = container.add_stream("pcm_s16le", rate=rate, layout="stereo")
        _write_audio(container, stream, np.concatenate(clips, axis=1), rate)
    return Path(path)


def write_reel(path: str | Path, clips: list[tuple[torch.Tensor, np.ndarray]], fps: int, rate: int) -> Path:
    """Concatenates (frames uint8 [F, H, W, 3], stereo audio [2, n] of exactly F / fps seconds) into
    one H.264 + AAC mp4. Clips of other sizes are letterboxed onto the first clip's size."""
    height, width = clips[0][0].shape[1:3]
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=Fraction(fps), options={"preset": "veryfast"})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        audio = container.add_stream("aac", rate=rate, layout="stereo")
        for frames, _ in clips:
            for image in frames.numpy():
                canvas = np.zeros((height, width, 3), np.uint8)
                h, w = min(height, image.shape[0]), min(width, image.shape[1])
                canvas[:h, :w] = image[:h, :w]
                container.mux(video.encode(av.VideoFrame.from_ndarray(canvas, format="rgb24")))
        container.mux(video.encode())
        _write_audio(container, audio, np.concatenate([sound for _, sound in clips], axis=1), rate)
    return Path(path)
