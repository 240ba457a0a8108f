"""Fitting a clip's video to a training window: which source frames, how they are retimed, and how
they are resized into a resolution bucket.

Retiming (frames are always taken at the target `frame_rate`):
  A clip is measured by its duration D (first video frame to the end of the last one), not by its
  native frame count. The target is F frames at R fps, i.e. T = F / R seconds.
  * Output frame i shows the source at time t_i = start + i * speed / R, and is the source frame
    whose timestamp is nearest to t_i (ties go to the earlier frame). A 60 fps clip thus keeps
    every 2.5th frame, a 25 fps clip repeats one frame in 24, a variable-rate clip is resampled
    by its timestamps.
  * With auto_scale_input off, speed is 1 and a clip is long enough when round(D * R) >= F,
    i.e. D >= (F - 0.5) / R: the last sampled frame is shown for at least half a frame period.
    For a clip at the target rate this is exactly "at least F frames"; at another rate it is the
    duration that counts (89 frames at 24 fps needs 3.69 s: a 25 fps clip of 89 frames, 3.56 s,
    is too short; a 60 fps clip of 222 frames is long enough). Only the first T seconds are used.
  * With auto_scale_input on, a clip that is long enough is used exactly as above (its first T
    seconds, real speed); a shorter clip is slowed down to last exactly T: speed = D / T, so the
    whole clip fills the F frames, and its audio is stretched to the same T.

Buckets: the clip is scaled to fill the bucket (the smaller scale that covers it) and centre
cropped. The crop is expressed in fractions of the source frame (`Crop`), so the reference of an
av2av pair gets exactly the target's transform and the two stay aligned even if their pixel
sizes differ."""

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import av
import cv2
import numpy as np

from avlora.stage import UserError
from services.preprocess.cancel import ShouldStop, stop_if_asked
from services.preprocess.probe import MediaInfo

TIE_S = 1e-6       # timestamps this close count as a tie (the earlier frame wins)
SEEK_AFTER_S = 1.0  # windows starting later than this seek (to the keyframe before) instead of decoding from 0


@dataclass(frozen=True)
class Window:
    """The part of a source clip that becomes one training clip (seconds from its first frame)."""

    start: float
    source_seconds: float   # how much of the source is used
    target_seconds: float   # how long it lasts once fitted: frames / frame_rate

    @property
    def speed(self) -> float:
        return self.source_seconds / self.target_seconds


@dataclass(frozen=True)
class Crop:
    """A centre crop as fractions of the source frame's width and height."""

    left: float
    top: float
    right: float
    bottom: float


def available_frames(duration: float, frame_rate: float) -> int:
    """Frames a clip of `duration` seconds yields at `frame_rate` (see the module docstring)."""
    return int(np.floor(duration * frame_rate + 0.5))


def training_window(duration: float, frames: int, frame_rate: float, auto_scale: bool,
                    start: float = 0.0) -> Window | None:
    """The window of a clip (or scene) of `duration` seconds starting at `start`, or None when it
    is too short and auto_scale is off."""
    target = frames / frame_rate
    if available_frames(duration, frame_rate) >= frames:
        return Window(start, target, target)
    if not auto_scale:
        return None
    return Window(start, duration, target)


def too_short_reason(info: MediaInfo, duration: float, frames: int, frame_rate: int) -> str:
    return (f"{info.name} is too short: {duration:.2f} s gives {available_frames(duration, frame_rate)} "
            f"frames at {frame_rate} fps, {frames} are needed ({(frames - 0.5) / frame_rate:.2f} s); "
            "turn on auto_scale_input to stretch short clips")


def sample_times(window: Window, frames: int, frame_rate: float) -> list[float]:
    return [window.start + index * window.speed / frame_rate for index in range(frames)]


def fill_crop(width: int, height: int, out_width: int, out_height: int) -> Crop:
    """Scale to fill (out_width, out_height), then centre crop."""
    scale = max(out_width / width, out_height / height)
    keep_w, keep_h = out_width / scale / width, out_height / scale / height
    return Crop((1 - keep_w) / 2, (1 - keep_h) / 2, (1 + keep_w) / 2, (1 + keep_h) / 2)


def fit_image(image: np.ndarray, crop: Crop, size: tuple[int, int]) -> np.ndarray:
    """Crops an RGB image [H, W, 3] by `crop` and resizes it to size = (width, height)."""
    height, width = image.shape[:2]
    x0, x1 = round(crop.left * width), max(round(crop.right * width), round(crop.left * width) + 1)
    y0, y1 = round(crop.top * height), max(round(crop.bottom * height), round(crop.top * height) + 1)
    cut = image[y0:y1, x0:x1]
    shrinking = cut.shape[1] > size[0] and cut.shape[0] > size[1]
    return cv2.resize(cut, size, interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)


def fit_video(info: MediaInfo, times: Sequence[float], crop: Crop, size: tuple[int, int],
              should_stop: ShouldStop | None = None) -> np.ndarray:
    """The frames nearest to `times`, cropped and resized: uint8 [len(times), height, width, 3].
    Decoding is streamed and stops at the last time: only one decoded frame is held besides the
    output. `should_stop` is asked before each decoded frame: JobCancelled when it says so."""
    width, height = size
    out = np.empty((len(times), height, width, 3), np.uint8)
    for index, image in enumerate(nearest_frames(info, times, should_stop)):
        out[index] = fit_image(image, crop, size)
    return out


def nearest_frames(info: MediaInfo, times: Sequence[float],
                   should_stop: ShouldStop | None = None) -> Iterator[np.ndarray]:
    """RGB images of the source frames nearest to each of the ascending `times`."""
    count = 0
    try:
        with av.open(str(info.path), metadata_errors="ignore") as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            if times[0] > SEEK_AFTER_S:
                offset = info.video_start + times[0] - SEEK_AFTER_S
                container.seek(int(offset / stream.time_base), stream=stream, backward=True)
            previous, previous_time = None, 0.0
            for frame in container.decode(stream):
                stop_if_asked(should_stop)
                if frame.time is None:
                    continue
                now = frame.time - info.video_start
                while count < len(times) and times[count] <= now:
                    earlier = previous is not None and times[count] - previous_time <= now - times[count] + TIE_S
                    yield _rgb(previous if earlier else frame)
                    count += 1
                if count == len(times):
                    return
                previous, previous_time = frame, now
    except av.error.FFmpegError as error:
        raise UserError(f"{info.name} could not be decoded ({error.strerror or type(error).__name__})") from None
    if previous is None:
        raise UserError(f"{info.name} has no decodable frames after {times[0]:.2f} s")
    for _ in range(count, len(times)):
        yield _rgb(previous)


def _rgb(frame: av.VideoFrame) -> np.ndarray:
    image = frame.to_ndarray(format="rgb24")
    turns = round((frame.rotation or 0) / 90) % 4
    return np.ascontiguousarray(np.rot90(image, turns)) if turns else image
