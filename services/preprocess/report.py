"""The dataset report's messages: one ClipReport per clip, pair or scene, accepted or not."""

from google.protobuf import json_format

from avlora.v1 import dataset_pb2
from services.preprocess.probe import MediaInfo


def clip_report(name: str, info: MediaInfo | None, accepted: bool, reason: str = "",
                caption: str = "") -> dataset_pb2.ClipReport:
    report = dataset_pb2.ClipReport(name=name, accepted=accepted, reason=reason, caption=caption)
    if info is not None:
        report.duration_seconds = info.duration
        report.native_fps = info.native_fps
        report.native_frames = info.native_frames
        report.width, report.height = info.width, info.height
        report.audio_channels, report.audio_sample_rate = info.audio_channels, info.audio_sample_rate
    return report


def report_json(report: dataset_pb2.DatasetReport) -> str:
    return json_format.MessageToJson(report, preserving_proto_field_name=True, indent=2,
                                     always_print_fields_with_no_presence=True)


def summary(report: dataset_pb2.DatasetReport) -> str:
    accepted = sum(clip.accepted for clip in report.clips)
    return f"{accepted} of {len(report.clips)} clips accepted, {len(report.errors)} errors"
