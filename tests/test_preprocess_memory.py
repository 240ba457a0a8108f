"""Memory stays bounded whatever the clip: a long 1080p clip is probed, scene-split and fitted in a
child process whose peak memory is compared with its baseline. A job cancelled in the middle of a
long clip stops within seconds. (Peak memory at the worst parameters: bench/preprocess_memory.py.)"""

import json
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from avlora.stage import JobCancelled
from avlora.v1 import dataset_pb2
from services.preprocess.checks import check_dataset
from services.preprocess.modes import preprocessing_for
from tests.preprocess_fixtures import inputs, small_v2a, store  # noqa: F401

CHILD = r"""
import json, resource, sys
from avlora.store import LocalStore
from avlora.v1 import dataset_pb2
from services.preprocess.checks import check_dataset
from services.preprocess.modes import preprocessing_for
from tests.preprocess_fixtures import inputs, small_v2a

store = LocalStore(sys.argv[1])
def manifest(name):
    m = dataset_pb2.Manifest(job_id="m")
    m.files.add(name=name, uri=store.uri(name), kind=dataset_pb2.VIDEO)
    return m
params = small_v2a(split_input_into_scenes=True, split_input_duration_threshold=1.0, resolution="medium",
                   aspect_ratio="1:1", number_of_frames=49)
for name in ("warmup.mp4", "long.mp4"):
    if name == "long.mp4":
        baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    plan, _ = check_dataset(manifest(name), params, inputs(store))
    for item in plan.items:  # one fitted clip (49 x 768 x 768 RGB: 87 MB) held at a time
        mode = preprocessing_for(params)
        clip = mode.fit_item(item, mode.training_settings())
        del clip
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"items": len(plan.items), "errors": list(plan.report.errors),
                  "increase_mb": (peak - baseline) / 1024}))
"""


def write_long_clip(path: Path, seconds: int, size=(1920, 1080), fps=24):
    """Fast to write: a few distinct frames (two scenes) encoded with x264 ultrafast, and a tone."""
    width, height = size
    palette = []
    for colour in ((200, 0, 0), (230, 230, 230)):
        for shade in range(4):
            image = np.empty((height, width, 3), np.uint8)
            image[:] = colour
            image[: height // 8, : (shade + 1) * width // 8] = 90
            palette.append(av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p"))
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps, options={"preset": "ultrafast"})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        audio = container.add_stream("aac", rate=16000, layout="mono")
        total = seconds * fps
        for index in range(total):
            frame = palette[(index * 2 // total) * 4 + index % 4]
            frame.pts = None
            container.mux(video.encode(frame))
        container.mux(video.encode())
        tone = (0.3 * np.sin(np.arange(seconds * 16000) * 0.2)).astype(np.float32)[None]
        sound = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
        sound.sample_rate, sound.pts = 16000, 0
        container.mux(audio.encode(sound))
        container.mux(audio.encode())


def write_looped_clip(path: Path, loops: int, size=(1920, 1080), fps=24):
    """A long clip written in a moment: one second of video (a cut in the middle) encoded once and
    muxed `loops` times one after the other, and one second of tone (enough for the probe)."""
    width, height = size
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps, options={"preset": "ultrafast"})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        audio = container.add_stream("aac", rate=16000, layout="mono")
        second = []
        for index in range(fps):
            image = np.full((height, width, 3), 200 if index < fps // 2 else 40, np.uint8)
            image[: height // 8, : (index + 1) * width // fps] = 90
            second += video.encode(av.VideoFrame.from_ndarray(image, format="rgb24"))
        second += video.encode()
        tone = (0.3 * np.sin(np.arange(16000) * 0.2)).astype(np.float32)[None]
        sound = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
        sound.sample_rate, sound.pts = 16000, 0
        for packet in audio.encode(sound) + audio.encode():
            container.mux(packet)
        for loop in range(loops):
            for packet in second:
                copy = av.Packet(bytes(packet))
                ticks = round(loop / packet.time_base)  # one second per loop
                copy.stream, copy.time_base, copy.is_keyframe = packet.stream, packet.time_base, packet.is_keyframe
                copy.pts, copy.dts, copy.duration = packet.pts + ticks, packet.dts + ticks, packet.duration
                container.mux(copy)


def test_a_long_1080p_clip_is_processed_in_bounded_memory(tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    write_long_clip(store / "warmup.mp4", seconds=3, size=(640, 360))
    write_long_clip(store / "long.mp4", seconds=24)  # 576 frames: 3.6 GB as decoded RGB
    result = subprocess.run([sys.executable, "-c", CHILD, str(store)], capture_output=True, text=True,
                            cwd=Path(__file__).parent.parent, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["errors"] == [] and outcome["items"] == 2  # both scenes found and fitted
    assert outcome["increase_mb"] < 300, outcome


class CancelAtCheck:
    """A job's `should_stop` that says yes at its n-th question (no clock) and counts the questions."""

    def __init__(self, n: int):
        self.n, self.checks = n, 0

    def __call__(self) -> bool:
        self.checks += 1
        return self.checks >= self.n


def test_cancelling_inside_a_long_clip_stops_at_the_next_check(store):
    """121 frames at 8 fps: 15 s of 1080p source decoded for one clip. Cancelled at its 5th check."""
    write_long_clip(store.path("jobs/c/ingest/files/long.mp4"), seconds=16)
    manifest = dataset_pb2.Manifest(job_id="c")
    manifest.files.add(name="long.mp4", uri=store.uri("jobs/c/ingest/files/long.mp4"), kind=1)
    params = small_v2a(number_of_frames=121, frame_rate=8, resolution="high", aspect_ratio="1:1")
    plan, _ = check_dataset(manifest, params, inputs(store))
    mode = preprocessing_for(params)
    asked = CancelAtCheck(5)
    with pytest.raises(JobCancelled):
        mode.fit_item(plan.items[0], mode.training_settings(), should_stop=asked)
    assert asked.checks == 5, "asked as it decodes, and stopped at the first yes"


def test_cancelling_scene_detection_of_a_long_clip_stops_at_the_next_check(store):
    """Ten minutes of 1080p (scene detection decodes all 14400 frames: over 10 s on two cores).
    Cancelled at the checks' 20th question."""
    write_looped_clip(store.path("jobs/s/ingest/files/long.mp4"), loops=600)
    manifest = dataset_pb2.Manifest(job_id="s")
    manifest.files.add(name="long.mp4", uri=store.uri("jobs/s/ingest/files/long.mp4"), kind=1)
    params = small_v2a(split_input_into_scenes=True, split_input_duration_threshold=1.0)
    asked = CancelAtCheck(20)
    with pytest.raises(JobCancelled):
        check_dataset(manifest, params, inputs(store), should_stop=asked)
    assert asked.checks == 20, "asked as it decodes, and stopped at the first yes"
