"""The `debug_dataset` archive: what the model sees. A zip with, per accepted item,
`clips/NNN_<name>.mp4` (the fitted frames at the training rate with the fitted audio),
`clips/NNN_<name>.txt` (its caption) and for av2av `clips/NNN_<name>_reference.mp4` (the scaled
reference with its audio), plus `report.json`: the DatasetReport, accepted and skipped clips with
reasons. In `<name>` every character other than a letter, a digit or '-' becomes '_'."""

import io
import re
import zipfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from avlora.v1 import dataset_pb2
from services.preprocess.audio import SAMPLE_RATE
from services.preprocess.clips import FitSettings
from services.preprocess.items import FittedClip
from services.preprocess.report import report_json


def clip_mp4(frames: np.ndarray, frame_rate: Fraction | int, audio: np.ndarray | None) -> bytes:
    """uint8 frames [F, H, W, 3] and float [2, samples] 16 kHz audio as an H.264/AAC mp4."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        video = container.add_stream("libx264", rate=Fraction(frame_rate))
        video.height, video.width = frames.shape[1:3]
        video.pix_fmt = "yuv420p"
        sound = container.add_stream("aac", rate=SAMPLE_RATE, layout="stereo") if audio is not None else None
        for image in frames:
            container.mux(video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(video.encode())
        if sound is not None:
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio, dtype=np.float32), format="fltp",
                                               layout="stereo")
            frame.sample_rate, frame.pts = SAMPLE_RATE, 0
            container.mux(sound.encode(frame))
            container.mux(sound.encode())
    return buffer.getvalue()


class DebugArchive:
    """Written item by item into `path`; `close(report)` adds the report and finishes the zip."""

    def __init__(self, path: Path, settings: FitSettings):
        self.path, self.settings = path, settings
        self.zip = zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED)

    def add(self, index: int, clip: FittedClip) -> None:
        stem = f"clips/{index:03d}_{_safe(clip.name)}"
        media = clip.media
        self.zip.writestr(f"{stem}.mp4", clip_mp4(media["video"], self.settings.frame_rate, media["audio"]))
        self.zip.writestr(f"{stem}.txt", clip.caption)
        if "ref_video" in media:
            rate = Fraction(self.settings.frame_rate, self.settings.temporal)
            self.zip.writestr(f"{stem}_reference.mp4", clip_mp4(media["ref_video"], rate, media["ref_audio"]))

    def close(self, report: dataset_pb2.DatasetReport) -> Path:
        self.zip.writestr("report.json", report_json(report))
        self.zip.close()
        return self.path


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9-]+", "_", name).strip("_")[:80] or "clip"
