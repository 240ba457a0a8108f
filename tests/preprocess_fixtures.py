"""Helpers for the preprocess tests: a store holding real clips and a Manifest built by hand (as
ingest would write it), small job parameters, and clips with scene cuts."""

from pathlib import Path

import av
import numpy as np
import pytest

from avlora.params import A2VParams, AV2AVParams, V2AParams
from avlora.store import LocalFiles, LocalStore
from avlora.v1 import dataset_pb2
from tests.media import write_clip

KINDS = {".txt": dataset_pb2.CAPTION, ".png": dataset_pb2.IMAGE, ".jpg": dataset_pb2.IMAGE}
URL = "https://example.com/data.zip"


def small_v2a(**overrides) -> V2AParams:
    """9 frames at 24 fps in the smallest bucket (512x288)."""
    values = dict(training_data_url=URL, number_of_frames=9, frame_rate=24, resolution="low",
                  aspect_ratio="16:9", validation_number_of_frames=9, validation_resolution="low",
                  validation_aspect_ratio="16:9")
    return V2AParams(**values | overrides)


def small_av2av(**overrides) -> AV2AVParams:
    values = dict(training_data_url=URL, number_of_frames=9, frame_rate=24, resolution="low",
                  aspect_ratio="16:9", validation_number_of_frames=9, validation_resolution="low",
                  validation_aspect_ratio="16:9")
    return AV2AVParams(**values | overrides)


def small_a2v(**overrides) -> A2VParams:
    values = dict(training_data_url=URL, number_of_frames=9, frame_rate=24, resolution="low",
                  aspect_ratio="16:9", validation_number_of_frames=9, validation_resolution="low",
                  validation_aspect_ratio="16:9")
    return A2VParams(**values | overrides)


def manifest_of(store: LocalStore, job_id: str, files: dict[str, dict | str | bytes],
                validation: list[dict] | None = None) -> dataset_pb2.Manifest:
    """Writes each file into the store (dict: write_clip arguments; str/bytes: the content) and
    returns the Manifest ingest would have written. validation: [{"prompt", "video": name,
    "audio": name}] naming files written the same way (not listed as dataset files)."""
    manifest = dataset_pb2.Manifest(job_id=job_id)
    uris = {}
    for name, content in files.items():
        key = f"jobs/{job_id}/ingest/files/{name}"
        path = store.path(key)
        if isinstance(content, dict):
            write_clip(path, **content)
        elif isinstance(content, str):
            path.write_text(content)
        else:
            path.write_bytes(content)
        uris[name] = store.uri(key)
        kind = KINDS.get(Path(name).suffix.lower(), dataset_pb2.VIDEO)
        if not name.startswith("validation/"):
            manifest.files.add(name=name, uri=uris[name], size=path.stat().st_size, kind=kind)
    for index, entry in enumerate(validation or []):
        manifest.validation.add(index=index, prompt=entry.get("prompt", ""), video_uri=uris[entry["video"]] if entry.get("video") else "",
                                audio_uri=uris[entry["audio"]] if entry.get("audio") else "")
    return manifest


def write_scenes(path: Path, colours: list[tuple[int, int, int]], seconds_each: float, fps: int = 24,
                 size: tuple[int, int] = (64, 48), audio_seconds: float | None = None) -> Path:
    """A clip of flat-colour scenes (hard cuts between them) with a tone lasting audio_seconds
    (default: the whole clip)."""
    width, height = size
    frames_each = round(seconds_each * fps)
    total = frames_each * len(colours) / fps
    audio_seconds = total if audio_seconds is None else audio_seconds
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        audio = container.add_stream("aac", rate=16000, layout="mono")
        for colour in colours:
            for index in range(frames_each):
                image = np.empty((height, width, 3), np.uint8)
                image[:] = colour
                image[:4, : index % width] = 255
                container.mux(video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(video.encode())
        samples = round(audio_seconds * 16000)
        tone = (0.3 * np.sin(np.arange(samples) * 2 * np.pi * 440 / 16000)).astype(np.float32)
        for start in range(0, samples, 1024):
            frame = av.AudioFrame.from_ndarray(tone[None, start:start + 1024].copy(), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, start
            container.mux(audio.encode(frame))
        container.mux(audio.encode())
    return path


@pytest.fixture
def store(tmp_path) -> LocalStore:
    return LocalStore(tmp_path / "store")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    from avlora.model.tiny import write_tiny_model

    return write_tiny_model(tmp_path_factory.mktemp("tiny-model") / "model")


def inputs(store: LocalStore) -> LocalFiles:
    """The store's files as the preprocess checks read them."""
    return LocalFiles(store, store.root.parent / "inputs")
