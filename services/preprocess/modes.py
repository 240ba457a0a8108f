"""How preprocessing treats the job's mode, read from its entry in avlora.modes
(`preprocessing_for`): how clips become training items (single clips, optionally scene-split, or
`_start` / `_end` pairs), the media fitted for encoding as a map from media key to media (the clip's
"video" and "audio", a pair's "ref_video" and "ref_audio"; the cache keys follow from the keys),
and how validation media (the mode's conditioning) is checked and fitted."""

from avlora.modes import Mode, mode_of
from avlora.params import JobParams
from avlora.stage import UserError
from avlora.store import LocalFiles
from avlora.v1 import dataset_pb2
from services.preprocess.clips import (FitSettings, ShouldStop, fit_frames, fit_reference_frames, fit_source_audio,
                                       target_crop)
from services.preprocess.fitting import too_short_reason, training_window
from services.preprocess.items import ClipSource, FittedClip, FittedValidation, Media, TrainingItem, ValidationItem
from services.preprocess.pairing import pair_clips, stem, with_trigger
from services.preprocess.probe import MediaInfo, probe_media
from services.preprocess.report import clip_report
from services.preprocess.scenes import detect_scenes

Videos = list[dataset_pb2.ManifestFile]


class Preprocessing:
    """How one job's dataset is planned, fitted and validated."""

    def __init__(self, params: JobParams):
        self.params = params
        self.mode: Mode = mode_of(params)

    def training_items(self, videos: Videos, infos: dict[str, MediaInfo], captions: dict[str, str],
                       report: dataset_pb2.DatasetReport, should_stop: ShouldStop | None = None) -> list[TrainingItem]:
        """The items of the probed `videos` (those in `infos`); adds a ClipReport per clip and the
        errors found to `report`. `should_stop` is asked while scenes are detected."""
        if self.mode.pairs:
            return self._pair_items(videos, infos, captions, report)
        return self._clip_items(videos, infos, captions, report, should_stop)

    def caption_names(self, videos: Videos) -> set[str]:
        """The base names a caption file may carry."""
        if self.mode.pairs:
            return {stem(video.name).rsplit("_", 1)[0] for video in videos}
        return {stem(video.name) for video in videos}

    def training_settings(self) -> FitSettings:
        params = self.params
        return FitSettings(params.number_of_frames, params.frame_rate, params.size, *params.audio_fit,
                           *params.reference_factors)

    def validation_settings(self) -> FitSettings:
        params = self.params
        return FitSettings(params.validation_number_of_frames, params.validation_frame_rate, params.validation_size,
                           *params.audio_fit, *params.reference_factors)

    def fit_item(self, item: TrainingItem, settings: FitSettings, should_stop: ShouldStop | None = None) -> FittedClip:
        """The item's media as the model sees it: the clip's video and audio, and a pair's reference."""
        crop = target_crop(item.target, settings)
        media = {"video": fit_frames(item.target, settings, crop, should_stop),
                 "audio": fit_source_audio(item.target, settings)}
        if item.reference is not None:
            media |= {"ref_video": fit_reference_frames(item.reference, settings, crop, should_stop),
                      "ref_audio": fit_source_audio(item.reference, settings)}
        return FittedClip(item.name, item.caption, media)

    def validation_item(self, media: dataset_pb2.ValidationMedia, local: LocalFiles,
                        should_stop: ShouldStop | None = None) -> ValidationItem:
        """One validation entry, probed: a source for each of the mode's conditioning media (a video's
        picture; a sound, from the entry's audio file or else its video's own track); UserError when
        it is unusable."""
        sources: dict[str, ClipSource] = {}
        for key in self.mode.conditioning:
            if key.endswith("video"):
                sources[key] = self._validation_source(media, "video", local, should_stop)
            elif media.audio_uri:
                sources[key] = audio = self._validation_source(media, "audio", local, should_stop)
                if not audio.info.has_audio:
                    raise UserError(f"{audio.label} has no audio track")
            else:
                video = next(source for name, source in sources.items() if name.endswith("video"))
                if not video.info.has_audio:
                    raise UserError(f"{video.label} has no audio track and no {self._audio_field()} was given "
                                    "(the audio reference is taken from the reference video's own track)")
                sources[key] = video
        return ValidationItem(media.index, media.prompt, sources)

    def fit_validation(self, item: ValidationItem, settings: FitSettings,
                       should_stop: ShouldStop | None = None) -> FittedValidation:
        fitted: Media = {}
        for key, source in item.media.items():
            if key == "video":
                fitted[key] = fit_frames(source, settings, target_crop(source, settings), should_stop)
            elif key == "ref_video":
                fitted[key] = fit_reference_frames(source, settings, target_crop(source, settings), should_stop)
            else:
                fitted[key] = fit_source_audio(source, settings)
        return FittedValidation(item.index, item.prompt, fitted)

    def _audio_field(self) -> str:
        names = [name for name in self.params.validation_model().media_fields() if "audio" in name]
        return names[0] if names else "audio file"

    def _window(self, info: MediaInfo, start: float = 0.0, duration: float | None = None):
        params = self.params
        return training_window(info.duration if duration is None else duration, params.number_of_frames,
                               params.frame_rate, params.auto_scale_input, start)

    def _validation_source(self, media, kind: str, local: LocalFiles,
                           should_stop: ShouldStop | None = None) -> ClipSource:
        """A validation file (`kind` "video" or "audio" of the entry `media`) probed, with the window
        it is fitted from: always as if auto_scale_input were on (a preview is never refused for its
        length). Messages name it by the user's entry and URL, not by its file in the store."""
        name = self.params.validation[media.index].label(media.index, kind)
        uri = media.video_uri if kind == "video" else media.audio_uri
        info = probe_media(local(uri), name, need_video=kind == "video", should_stop=should_stop)
        settings = self.validation_settings()
        return ClipSource(name, info, training_window(info.duration, settings.frames, settings.frame_rate, True))

    def _clip_items(self, videos, infos, captions, report, should_stop=None) -> list[TrainingItem]:
        """Each clip (or scene of a long clip) is one item; its video and audio both count."""
        items = []
        params = self.params
        for video in videos:
            info = infos.get(video.name)
            if info is None:
                continue
            caption = with_trigger(params.trigger_phrase, captions.get(stem(video.name), ""))
            segments = [(info.name, 0.0, info.duration)]
            if params.split_input_into_scenes and info.duration > params.split_input_duration_threshold:
                try:
                    segments = [(scene.label(info.name), scene.start, scene.duration)
                                for scene in detect_scenes(info, should_stop)]
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
                window = self._window(info, start, duration)
                if window is None:
                    reason = too_short_reason(info, duration, params.number_of_frames,
                                              params.frame_rate).replace(info.name, label, 1)
                    report.clips.append(clip_report(label, info, False, reason, caption))
                    continue
                items.append(TrainingItem(label, caption, ClipSource(label, info, window)))
                report.clips.append(clip_report(label, info, True, caption=caption))
        return items

    def _pair_items(self, videos, infos, captions, report) -> list[TrainingItem]:
        """Each `<name>_start` / `<name>_end` pair is one item: the `_start` clip the reference, the
        `_end` clip the target."""
        pairs, errors = pair_clips(videos)
        report.errors.extend(errors)
        items = []
        params = self.params
        for pair in pairs:
            reference, target = infos.get(pair.start.name), infos.get(pair.end.name)
            caption = with_trigger(params.trigger_phrase, captions.get(pair.name, ""))
            if reference is None or target is None:
                continue  # its probe or audio error is reported
            windows = [self._window(info) for info in (reference, target)]
            short = [too_short_reason(info, info.duration, params.number_of_frames, params.frame_rate)
                     for info, window in zip((reference, target), windows) if window is None]
            if short:
                report.clips.append(clip_report(pair.name, target, False, "; ".join(short), caption))
                continue
            items.append(TrainingItem(pair.name, caption, ClipSource(target.name, target, windows[1]),
                                      ClipSource(reference.name, reference, windows[0])))
            report.clips.append(clip_report(pair.name, target, True, caption=caption))
        return items


def preprocessing_for(params: JobParams) -> Preprocessing:
    return Preprocessing(params)
