"""Scene splitting (v2a `split_input_into_scenes`): a clip longer than the threshold is cut at the
scene changes PySceneDetect's ContentDetector finds (frames are decoded one at a time and
downscaled for detection, so memory stays flat whatever the clip's length; `should_stop` is asked
before each one, so a cancelled job stops within a frame). Each segment then goes
through the same length and audio checks as a clip of its own."""

from dataclasses import dataclass

from scenedetect import ContentDetector, detect
from scenedetect.video_stream import VideoOpenFailure

from avlora.stage import UserError
from services.preprocess.cancel import ShouldStop, stop_if_asked
from services.preprocess.probe import MediaInfo

MIN_SCENE_SECONDS = 0.5


@dataclass(frozen=True)
class Scene:
    index: int      # 1-based, in clip order
    start: float    # seconds from the clip's first frame
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start

    def label(self, clip_name: str) -> str:
        return f"{clip_name} scene {self.index} ({self.start:.2f}-{self.end:.2f} s)"


class StoppableContentDetector(ContentDetector):
    """ContentDetector asking `should_stop` before each frame (scenedetect stops its decoding
    thread when a detector raises)."""

    def __init__(self, should_stop: ShouldStop | None, **options):
        super().__init__(**options)
        self.should_stop = should_stop

    def process_frame(self, timecode, frame_img):
        stop_if_asked(self.should_stop)
        return super().process_frame(timecode, frame_img)


def detect_scenes(info: MediaInfo, should_stop: ShouldStop | None = None) -> list[Scene]:
    """The scenes of a clip, covering it from start to end (one scene when there is no cut)."""
    detector = StoppableContentDetector(should_stop, min_scene_len=f"{MIN_SCENE_SECONDS}s")
    try:
        spans = detect(str(info.path), detector, start_in_scene=True, backend="pyav")
    except (VideoOpenFailure, OSError, ValueError) as error:
        raise UserError(f"{info.name}: scene detection could not read it ({error})") from None
    cuts = sorted(start.seconds for start, _ in spans[1:])
    bounds = [0.0] + [cut for cut in cuts if 0.0 < cut < info.duration] + [info.duration]
    return [Scene(index + 1, start, end) for index, (start, end) in enumerate(zip(bounds, bounds[1:]))]
