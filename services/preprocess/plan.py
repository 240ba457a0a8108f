"""Every dataset check, without encoding: probe each clip, require audio, pair av2av clips, attach
captions, split v2a scenes, apply the length rule and check that the audio used is not silence.
The result is the list of training items and the DatasetReport that inspection returns and the
debug archive carries. Errors are collected, so one run names every offending file."""

from collections.abc import Callable
from dataclasses import dataclass

from avlora.params import JobParams
from avlora.store import LocalFiles
from avlora.v1 import dataset_pb2
from avlora.stage import UserError
from services.preprocess.audio import is_silent, read_audio
from services.preprocess.fitting import Window, too_short_reason, training_window
from services.preprocess.pairing import pair_clips, read_captions, stem, unused_captions, with_trigger
from services.preprocess.probe import MediaInfo, probe_media, require_audio
from services.preprocess.report import clip_report
from services.preprocess.scenes import detect_scenes

ALL_TOO_SHORT = "All training videos are too short to be trainable"
Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class ClipSource:
    """One source clip (or scene of one) and the window of it that is used."""

    label: str
    info: MediaInfo
    window: Window


@dataclass(frozen=True)
class TrainingItem:
    name: str                          # v2a: the video (or scene); av2av: the pair's base name
    caption: str                       # trigger phrase prepended
    target: ClipSource                 # v2a: the clip; av2av: the `_end` clip
    reference: ClipSource | None = None  # av2av: the `_start` clip


@dataclass
class DatasetPlan:
    items: list[TrainingItem]
    report: dataset_pb2.DatasetReport

    def raise_errors(self) -> None:
        if self.report.errors:
            raise UserError("; ".join(self.report.errors))


def plan_dataset(manifest: dataset_pb2.Manifest, params: JobParams, local: LocalFiles,
                 on_progress: Progress | None = None) -> DatasetPlan:
    report = dataset_pb2.DatasetReport(ignored=list(manifest.ignored))
    errors = report.errors
    for file in manifest.files:
        if file.kind == dataset_pb2.IMAGE:
            errors.append(f"{file.name} is an image: image datasets are rejected (training needs video "
                          "clips with audio, motion over time)")
    videos = [file for file in manifest.files if file.kind == dataset_pb2.VIDEO]
    if not videos:
        errors.append("the archive holds no video clips (.mp4, .mov, .avi, .mkv, .webm)")
    infos: dict[str, MediaInfo] = {}
    for done, video in enumerate(videos):
        if on_progress:
            on_progress(done, len(videos), f"checking {video.name}")
        try:
            infos[video.name] = info = probe_media(local(video.uri), video.name)
            require_audio(info)
        except UserError as error:
            errors.append(str(error))
            report.clips.append(clip_report(video.name, infos.pop(video.name, None), False, str(error)))
    captions = read_captions(list(manifest.files), local)
    if params.mode == "v2a":
        items = _v2a_items(videos, infos, captions, params, report)
        named = {stem(video.name) for video in videos}
    else:
        items = _av2av_items(videos, infos, captions, params, report)
        named = {stem(video.name).rsplit("_", 1)[0] for video in videos}
    report.ignored.extend(unused_captions(list(manifest.files), named))
    items = _audible_items(items, report)
    if not items and not errors:
        errors.append(ALL_TOO_SHORT)
    report.ok = not errors
    return DatasetPlan(items, report)


def _v2a_items(videos, infos, captions, params, report) -> list[TrainingItem]:
    items = []
    frames, rate, auto = params.number_of_frames, params.frame_rate, params.auto_scale_input
    for video in videos:
        info = infos.get(video.name)
        if info is None:
            continue
        caption = with_trigger(params.trigger_phrase, captions.get(stem(video.name), ""))
        segments = [(info.name, 0.0, info.duration)]
        if params.split_input_into_scenes and info.duration > params.split_input_duration_threshold:
            try:
                segments = [(scene.label(info.name), scene.start, scene.duration) for scene in detect_scenes(info)]
            except UserError as error:
                report.errors.append(str(error))
                report.clips.append(clip_report(info.name, info, False, str(error), caption))
                continue
        for label, start, duration in segments:
            if not info.audio_covers(start, start + duration):
                error = (f"{label} has no audio track: the clip's audio covers {info.audio_start:.2f}-"
                         f"{info.audio_end:.2f} s (scene splitting cut a segment without sound; turn "
                         "split_input_into_scenes off or provide pre-split clips)")
                report.errors.append(error)
                report.clips.append(clip_report(label, info, False, error, caption))
                continue
            window = training_window(duration, frames, rate, auto, start)
            if window is None:
                reason = too_short_reason(info, duration, frames, rate).replace(info.name, label, 1)
                report.clips.append(clip_report(label, info, False, reason, caption))
                continue
            items.append(TrainingItem(label, caption, ClipSource(label, info, window)))
            report.clips.append(clip_report(label, info, True, caption=caption))
    return items


def _av2av_items(videos, infos, captions, params, report) -> list[TrainingItem]:
    pairs, errors = pair_clips(videos)
    report.errors.extend(errors)
    items = []
    frames, rate, auto = params.number_of_frames, params.frame_rate, params.auto_scale_input
    for pair in pairs:
        reference, target = infos.get(pair.start.name), infos.get(pair.end.name)
        caption = with_trigger(params.trigger_phrase, captions.get(pair.name, ""))
        if reference is None or target is None:
            continue  # its probe or audio error is reported
        windows = [training_window(info.duration, frames, rate, auto) for info in (reference, target)]
        short = [too_short_reason(info, info.duration, frames, rate)
                 for info, window in zip((reference, target), windows) if window is None]
        if short:
            report.clips.append(clip_report(pair.name, target, False, "; ".join(short), caption))
            continue
        items.append(TrainingItem(pair.name, caption, ClipSource(target.name, target, windows[1]),
                                  ClipSource(reference.name, reference, windows[0])))
        report.clips.append(clip_report(pair.name, target, True, caption=caption))
    return items


def _audible_items(items: list[TrainingItem], report) -> list[TrainingItem]:
    """Drops (as errors) items whose audio window is digital silence."""
    audible = []
    for item in items:
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
