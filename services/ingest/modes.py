"""What ingest does differently per mode: one object per mode, looked up once from the job's
parameters. A new mode is one new class here and one entry in MODES."""

from avlora.params import JobParams

ALL_VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp")


class IngestMode:
    name: str
    video_suffixes: tuple[str, ...]   # the training videos an archive may hold (others are ignored)

    def validation_urls(self, entry) -> list[tuple[str, str]]:
        """(kind, url) of each file a validation entry names, e.g. ("video", "https://...")."""
        raise NotImplementedError


class V2AIngest(IngestMode):
    """Video to audio: silent or sounding videos; a validation entry is one video."""
    name, video_suffixes = "v2a", (".mp4", ".mov", ".avi", ".mkv")

    def validation_urls(self, entry) -> list[tuple[str, str]]:
        return [("video", entry.video_url)]


class AV2AVIngest(IngestMode):
    """Audio+video to audio+video: paired clips; a validation entry is a reference video and
    optionally a reference audio."""
    name, video_suffixes = "av2av", (".mp4", ".mov", ".webm", ".mkv", ".avi")

    def validation_urls(self, entry) -> list[tuple[str, str]]:
        urls = [("video", entry.reference_video_url)]
        if entry.reference_audio_url:
            urls.append(("audio", entry.reference_audio_url))
        return urls


MODES: dict[str, IngestMode] = {mode.name: mode for mode in (V2AIngest(), AV2AVIngest())}


def ingest_mode(params: JobParams) -> IngestMode:
    return MODES[params.mode]
