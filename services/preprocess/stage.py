"""The preprocess stage: Manifest -> checks -> fitted media -> encoded, cached training set.

Everything lands under jobs/<job>/preprocess/ in the store: one safetensors file per training
item (samples/), per validation entry (validation/), the negative prompt, the debug archive and
the TrainingSet manifest (training_set.pb). A redelivered job reuses every file already written:
a file's name carries a digest of what it was made from, so a cached file is only reused for the
same clip, window and settings."""

import hashlib
from pathlib import Path

from avlora.model.cache import CACHE_VERSION, to_bytes
from avlora.v1 import dataset_pb2
from avlora.stage import StageContext, stage_output
from avlora.store import LocalFiles
from services.preprocess.checks import check_dataset
from services.preprocess.clips import FitSettings
from services.preprocess.debug_archive import DebugArchive
from services.preprocess.diagnostics import warnings_summary
from services.preprocess.encoding import DatasetEncoder
from services.preprocess.report import summary


def run(ctx: StageContext) -> str:
    """Preprocesses the job's dataset and returns the TrainingSet's URI."""
    return stage_output(ctx, ctx.files.training_set, lambda scratch: build_training_set(ctx, scratch))


def build_training_set(ctx: StageContext, scratch: Path) -> dataset_pb2.TrainingSet:
    store = ctx.store
    manifest = dataset_pb2.Manifest.FromString(store.read_bytes(ctx.input_uri))
    plan, validation = check_dataset(manifest, ctx.params, LocalFiles(store, scratch / "inputs"),
                                     on_progress=lambda done, total, message: ctx.progress(done, total, "files", message),
                                     should_stop=ctx.cancelled)
    plan.raise_errors()
    ctx.log(summary(plan.report))
    ctx.log(warnings_summary(plan.report))
    mode = plan.mode
    settings = mode.training_settings()
    builder = TrainingSetBuilder(ctx)
    training_set = builder.training_set(plan.report, settings)
    archive = builder.debug_archive(settings, scratch)
    for index, item in enumerate(plan.items):
        ctx.raise_if_cancelled()
        sample_key = builder.key("samples", index, item, settings)
        cached = store.exists(sample_key)
        clip = None if cached and archive is None else mode.fit_item(item, settings, should_stop=ctx.cancelled)
        if archive is not None:
            archive.add(index, clip)
        uri = store.uri(sample_key) if cached else store.write_bytes(
            sample_key, to_bytes(builder.encoder().training_sample(clip, settings, ctx.cancelled)))
        training_set.samples.add(name=item.name, uri=uri, caption=item.caption)
        ctx.progress(index + 1, len(plan.items), "clips", f"encoded {item.name}")
    validation_settings = mode.validation_settings()
    for item in validation:
        ctx.raise_if_cancelled()
        uri = store.reuse_or_write(
            builder.key("validation", item.index, item, validation_settings),
            lambda: to_bytes(builder.encoder().validation_sample(
                mode.fit_validation(item, validation_settings, should_stop=ctx.cancelled), validation_settings,
                ctx.cancelled)))
        training_set.validation.add(index=item.index, prompt=item.prompt, uri=uri)
    negative = ctx.params.validation_negative_prompt
    training_set.negative_prompt_uri = store.reuse_or_write(builder.key("negative_prompt", 0, negative, None),
                                                            lambda: to_bytes(builder.encoder().prompt(negative)))
    if archive is not None:
        training_set.debug_dataset_uri = store.put_file(ctx.files.debug_dataset, archive.close(plan.report))
    elif ctx.params.debug_dataset:
        training_set.debug_dataset_uri = store.uri(ctx.files.debug_dataset)
    return training_set


class TrainingSetBuilder:
    """Names the job's cached files and loads the encoders only when something must be encoded."""

    def __init__(self, ctx: StageContext):
        self.ctx = ctx
        self._encoder: DatasetEncoder | None = None

    def key(self, folder: str, index: int, source: object, settings: FitSettings | None) -> str:
        key = (source, settings, self.ctx.settings.model_dir, CACHE_VERSION)  # an older format is rebuilt
        digest = hashlib.sha256(repr(key).encode()).hexdigest()[:16]
        return self.ctx.files.cached(folder, f"{index:04d}-{digest}.safetensors")

    def encoder(self) -> DatasetEncoder:
        if self._encoder is None:
            self._encoder = DatasetEncoder(self.ctx.settings.model_dir)
        return self._encoder

    def debug_archive(self, settings: FitSettings, scratch: Path) -> DebugArchive | None:
        if not self.ctx.params.debug_dataset or self.ctx.store.exists(self.ctx.files.debug_dataset):
            return None
        return DebugArchive(scratch / "debug_dataset.zip", settings)

    def training_set(self, report: dataset_pb2.DatasetReport, settings: FitSettings) -> dataset_pb2.TrainingSet:
        width, height = settings.size
        return dataset_pb2.TrainingSet(
            job_id=self.ctx.job_id, mode=self.ctx.params.mode, report=report, width=width, height=height,
            frame_rate=settings.frame_rate)
