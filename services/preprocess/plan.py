"""Every dataset check, without encoding: probe each clip, require audio, pair av2av clips, attach
captions, split v2a scenes, apply the length rule, check that the audio used is not silence, and
measure every clip's sound (warnings: services/preprocess/diagnostics.py).
The result is the list of training items and the DatasetReport that inspection returns and the
debug archive carries. Errors are collected, so one run names every offending file."""

from collections.abc import Callable
from dataclasses import dataclass

from avlora.params import JobParams
from avlora.store import LocalFiles
from avlora.v1 import dataset_pb2
from avlora.stage import UserError
from services.preprocess.audio import is_silent, read_audio
from services.preprocess.cancel import ShouldStop, stop_if_asked
from services.preprocess.diagnostics import diagnose
from services.preprocess.items import ClipSource, TrainingItem
from services.preprocess.modes import Preprocessing, preprocessing_for
from services.preprocess.pairing import read_captions, unused_captions
from services.preprocess.probe import MediaInfo, probe_media, require_audio
from services.preprocess.report import clip_report

ALL_TOO_SHORT = "All training videos are too short to be trainable"
Progress = Callable[[int, int, str], None]


@dataclass
class DatasetPlan:
    items: list[TrainingItem]
    report: dataset_pb2.DatasetReport
    mode: Preprocessing  # the job's mode: how the items are fitted and validated

    def raise_errors(self) -> None:
        if self.report.errors:
            raise UserError("; ".join(self.report.errors))


def plan_dataset(manifest: dataset_pb2.Manifest, params: JobParams, local: LocalFiles,
                 on_progress: Progress | None = None, should_stop: ShouldStop | None = None) -> DatasetPlan:
    report = dataset_pb2.DatasetReport(ignored=list(manifest.ignored))
    mode = preprocessing_for(params)
    errors = report.errors
    for file in manifest.files:
        if file.kind == dataset_pb2.IMAGE:
            errors.append(f"{file.name} is an image: image datasets are rejected (training needs video "
                          "clips with audio, motion over time)")
    videos = [file for file in manifest.files if file.kind == dataset_pb2.VIDEO]
    if not videos:
        errors.append("the archive holds no video clips")  # ingest refuses such an archive first
    infos: dict[str, MediaInfo] = {}
    for done, video in enumerate(videos):
        if on_progress:
            on_progress(done, len(videos), f"checking {video.name}")
        try:
            infos[video.name] = info = probe_media(local(video.uri), video.name, should_stop=should_stop)
            require_audio(info)
        except UserError as error:
            errors.append(str(error))
            report.clips.append(clip_report(video.name, infos.pop(video.name, None), False, str(error)))
    captions = read_captions(list(manifest.files), local)
    items = mode.training_items(videos, infos, captions, report, should_stop)
    report.ignored.extend(unused_captions(list(manifest.files), mode.caption_names(videos)))
    items = _audible_items(items, report, should_stop)
    diagnose(items, report, should_stop)
    if not items and not errors:
        errors.append(all_too_short(report, params))
    report.ok = not errors
    return DatasetPlan(items, report, mode)


def all_too_short(report: dataset_pb2.DatasetReport, params: JobParams) -> str:
    """The seeds' message, naming the clips and the fix."""
    names = ", ".join(clip.name for clip in report.clips if not clip.accepted)
    frames, rate = params.number_of_frames, params.frame_rate
    return (f"{ALL_TOO_SHORT}: {names} (each needs {frames} frames at {rate} fps, "
            f"{(frames - 0.5) / rate:.2f} s); turn on auto_scale_input to stretch short clips, "
            "or lower number_of_frames")


def _audible_items(items: list[TrainingItem], report, should_stop: ShouldStop | None) -> list[TrainingItem]:
    """Drops (as errors) items whose audio window is digital silence."""
    audible = []
    for item in items:
        stop_if_asked(should_stop)
        problems = [problem for source in (item.target, item.reference) if source is not None
                    for problem in [_audio_problem(source)] if problem]
        report.errors.extend(problems)
        if problems:
            for clip in report.clips:
                if clip.name == item.name:
                    clip.accepted, clip.reason = False, "; ".join(problems)
        else:
            audible.append(item)
    return audible


def _audio_problem(source: ClipSource) -> str:
    try:
        if is_silent(read_audio(source.info, source.window.start, source.window.source_seconds)):
            return f"{source.label} has a silent audio track (no sound in the part used for training)"
    except UserError as error:
        return str(error)
    return ""
