"""What ingest does differently per mode: one object per mode, looked up once from the job's
parameters. A new mode is one new class here and one entry in MODES."""

from avlora.params import JobParams

ALL_VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp")


class IngestMode:
    name: str
    video_suffixes: tuple[str, ...]   # the training videos an archive may hold (others are ignored)


class V2AIngest(IngestMode):
    """Video to audio: silent or sounding videos; a validation entry is one video."""
    name, video_suffixes = "v2a", (".mp4", ".mov", ".avi", ".mkv")


class AV2AVIngest(IngestMode):
    """Audio+video to audio+video: paired clips; a validation entry is a reference video and
    optionally a reference audio."""
    name, video_suffixes = "av2av", (".mp4", ".mov", ".webm", ".mkv", ".avi")


MODES: dict[str, IngestMode] = {mode.name: mode for mode in (V2AIngest(), AV2AVIngest())}


def ingest_mode(params: JobParams) -> IngestMode:
    return MODES[params.mode]
