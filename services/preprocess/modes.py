"""One object per mode for preprocessing, chosen once from the job's parameters
(`preprocessing_for`). A mode owns how clips become training items (v2a: single clips, optionally
scene-split; av2av: `_start` / `_end` pairs), what is fitted for encoding (v2a: video + audio;
av2av: target video and audio plus the scaled reference video and its audio), how validation
media is checked and fitted, and the reference settings. A new mode is one new subclass here."""

from abc import ABC, abstractmethod

from avlora.params import AV2AVParams, JobParams, V2AParams
from avlora.stage import UserError
from avlora.store import LocalFiles
from avlora.v1 import dataset_pb2
from services.preprocess.clips import (FitSettings, ShouldStop, fit_frames, fit_reference_frames, fit_source_audio,
                                       target_crop)
from services.preprocess.fitting import too_short_reason, training_window
from services.preprocess.items import ClipSource, FittedClip, FittedValidation, TrainingItem, ValidationItem
from services.preprocess.pairing import pair_clips, stem, with_trigger
from services.preprocess.probe import MediaInfo, probe_media
from services.preprocess.report import clip_report
from services.preprocess.scenes import detect_scenes

Videos = list[dataset_pb2.ManifestFile]


class Preprocessing(ABC):
    """How one mode's dataset is planned, fitted and validated."""

    def __init__(self, params: JobParams):
        self.params = params

    @abstractmethod
    def training_items(self, videos: Videos, infos: dict[str, MediaInfo], captions: dict[str, str],
                       report: dataset_pb2.DatasetReport, should_stop: ShouldStop | None = None) -> list[TrainingItem]:
        """The items of the probed `videos` (those in `infos`); adds a ClipReport per clip and the
        errors found to `report`. `should_stop` is asked while scenes are detected."""

    @abstractmethod
    def caption_names(self, videos: Videos) -> set[str]:
        """The base names a caption file may carry."""

    @abstractmethod
    def fit_item(self, item: TrainingItem, settings: FitSettings, should_stop: ShouldStop | None = None) -> FittedClip:
        """The item's media as the model sees it."""

    @abstractmethod
    def validation_item(self, media: dataset_pb2.ValidationMedia, local: LocalFiles,
                        should_stop: ShouldStop | None = None) -> ValidationItem:
        """One validation entry, probed; UserError when it is unusable."""

    @abstractmethod
    def fit_validation(self, item: ValidationItem, settings: FitSettings,
                       should_stop: ShouldStop | None = None) -> FittedValidation: ...

    def audio_and_reference(self) -> dict:
        """FitSettings fields other than the frames, rate and size."""
        return dict(normalize=False, preserve_pitch=True)

    def training_settings(self) -> FitSettings:
        params = self.params
        return FitSettings(params.number_of_frames, params.frame_rate, params.size, **self.audio_and_reference())

    def validation_settings(self) -> FitSettings:
        params = self.params
        return FitSettings(params.validation_number_of_frames, params.validation_frame_rate, params.validation_size,
                           **self.audio_and_reference())

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


class V2APreprocessing(Preprocessing):
    """v2a: each clip (or scene of a long clip) is one item; its video conditions, its audio is
    learnt. A validation video is the silent conditioning: it needs no audio."""

    params: V2AParams

    def training_items(self, videos, infos, captions, report, should_stop=None) -> list[TrainingItem]:
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

    def caption_names(self, videos: Videos) -> set[str]:
        return {stem(video.name) for video in videos}

    def fit_item(self, item, settings, should_stop=None) -> FittedClip:
        crop = target_crop(item.target, settings)
        return FittedClip(item.name, item.caption, fit_frames(item.target, settings, crop, should_stop),
                          fit_source_audio(item.target, settings))

    def validation_item(self, media, local, should_stop=None) -> ValidationItem:
        return ValidationItem(media.index, media.prompt, self._validation_source(media, "video", local, should_stop),
                              None)

    def fit_validation(self, item, settings, should_stop=None) -> FittedValidation:
        crop = target_crop(item.video, settings)
        return FittedValidation(item.index, item.prompt, fit_frames(item.video, settings, crop, should_stop), None)


class AV2AVPreprocessing(Preprocessing):
    """av2av: each `<name>_start` / `<name>_end` pair is one item; the `_start` clip (video and
    audio) is the reference, scaled by the reference factors, the `_end` clip the target. A
    validation entry is a reference video whose audio reference is `reference_audio_url`'s file when
    given, else the video's own track (a reference video with neither is refused)."""

    params: AV2AVParams

    def training_items(self, videos, infos, captions, report, should_stop=None) -> list[TrainingItem]:
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

    def caption_names(self, videos: Videos) -> set[str]:
        return {stem(video.name).rsplit("_", 1)[0] for video in videos}

    def audio_and_reference(self) -> dict:
        params = self.params
        return dict(normalize=params.audio_normalize, preserve_pitch=params.audio_preserve_pitch,
                    downscale=params.reference_downscale_factor, temporal=params.reference_temporal_scale_factor)

    def fit_item(self, item, settings, should_stop=None) -> FittedClip:
        crop = target_crop(item.target, settings)
        return FittedClip(item.name, item.caption, fit_frames(item.target, settings, crop, should_stop),
                          fit_source_audio(item.target, settings),
                          fit_reference_frames(item.reference, settings, crop, should_stop),
                          fit_source_audio(item.reference, settings))

    def validation_item(self, media, local, should_stop=None) -> ValidationItem:
        video = self._validation_source(media, "video", local, should_stop)
        if media.audio_uri:
            audio = self._validation_source(media, "audio", local, should_stop)
            if not audio.info.has_audio:
                raise UserError(f"{audio.label} has no audio track")
            return ValidationItem(media.index, media.prompt, video, audio)
        if not video.info.has_audio:
            raise UserError(f"{video.label} has no audio track and no reference_audio_url "
                            "was given (the audio reference is taken from the reference video's own track)")
        return ValidationItem(media.index, media.prompt, video, video)

    def fit_validation(self, item, settings, should_stop=None) -> FittedValidation:
        crop = target_crop(item.video, settings)
        return FittedValidation(item.index, item.prompt, fit_reference_frames(item.video, settings, crop, should_stop),
                                fit_source_audio(item.audio, settings))


MODES: dict[str, type[Preprocessing]] = {"v2a": V2APreprocessing, "av2av": AV2AVPreprocessing}


def preprocessing_for(params: JobParams) -> Preprocessing:
    return MODES[params.mode](params)
