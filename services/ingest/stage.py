"""The ingest stage: fetch the dataset zip and the validation media, extract the zip safely, and
store a Manifest for preprocessing."""

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

from avlora.modes import mode_of
from avlora.netguard import redact_url
from avlora.params import JobParams
from avlora.stage import StageContext, Throttle, UserError, stage_output
from avlora.store import UPLOAD_SCHEME, ArtifactStore, JobFiles, LocalFiles
from avlora.v1 import dataset_pb2
from services.ingest import archive
from services.ingest.fetch import download
from services.ingest.limits import IngestLimits

ProgressFunction = Callable[..., None]  # (done, total, unit, message)


def run(ctx: StageContext) -> str:
    """Ingests the job's dataset and returns the Manifest's URI (reused when already written)."""
    return stage_output(ctx, ctx.files.manifest, lambda work_dir: ingest_dataset(
        ctx.params, ctx.store, ctx.files, work_dir, on_progress=ctx.progress, on_log=ctx.log,
        checkpoint=ctx.raise_if_cancelled))


def ingest_dataset(params: JobParams, store: ArtifactStore, files: JobFiles, work_dir: Path,
                   on_progress: ProgressFunction | None = None, on_log: Callable[[str], None] | None = None,
                   checkpoint: Callable[[], None] | None = None, limits: IngestLimits | None = None,
                   output_store: ArtifactStore | None = None) -> dataset_pb2.Manifest:
    """Fetches, checks and extracts the dataset (through the scratch folder `work_dir`) into the
    job's `ingest/` files and fetches the validation media; returns the Manifest. Raises UserError
    for bad input. Uploads are read from `store`; what ingest writes goes to `output_store` (default
    `store`; InspectDataset keeps it on local disk), which then holds every file the Manifest names."""
    limits = limits or IngestLimits.from_env()
    mode = mode_of(params)
    work_dir = Path(work_dir)
    progress = on_progress or (lambda *args, **kwargs: None)
    manifest = dataset_pb2.Manifest(job_id=files.job_id, archive_uri=redact_url(params.training_data_url))
    output = output_store or store
    output.remove(files.extracted_dir)  # a redelivered job extracts again from scratch
    try:
        with (fetched(params.training_data_url, store, work_dir / "dataset.zip", limits, "dataset", progress,
                      checkpoint) as archive_path,
              archive.open_archive(archive_path) as zip_file):
            plan = archive.plan_archive(zip_file, archive_path.stat().st_size, mode, limits)
            on_file = _throttled(progress, "files", "extracting")
            for entry, path, size in archive.extract(zip_file, plan, work_dir / "files", limits, on_file,
                                                     checkpoint):
                uri = output.move_file(files.extracted(path.name), path)
                manifest.files.add(name=entry.name, uri=uri, size=size, kind=entry.kind)
    except BaseException:
        output.remove(files.extracted_dir)
        raise
    manifest.ignored.extend(plan.ignored)
    for item in plan.ignored:
        if on_log:
            on_log(f"ignored {item.name}: {item.reason}")
    for index, entry in enumerate(params.validation):
        uris = {kind: _fetch_media(url, store, output, files, work_dir, f"validation[{index}] {kind}", limits,
                                   progress, checkpoint)
                for kind, url in entry.media().items()}
        manifest.validation.add(index=index, prompt=entry.prompt, video_uri=uris.get("video", ""),
                                audio_uri=uris.get("audio", ""))
    return manifest


@contextmanager
def fetched(url: str, store: ArtifactStore, dest: Path, limits: IngestLimits, label: str,
            progress: ProgressFunction, checkpoint: Callable[[], None] | None) -> Iterator[Path]:
    """`url` as a local file for the block: an upload read from the store, or a download to `dest`."""
    if url.startswith(UPLOAD_SCHEME):  # the store's own file, or a copy in the scratch folder
        yield LocalFiles(store, dest.parent)(upload_key(url, store, label))
        return
    if not url.startswith(("http://", "https://")):
        raise UserError(f"{label}: unsupported URL {redact_url(url)} (use http://, https:// or upload://)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    download(url, dest, limits, label, _throttled(progress, "bytes", f"downloading {label}"), checkpoint)
    yield dest


def upload_key(url: str, store: ArtifactStore, label: str) -> str:
    try:
        key = store.key(url)
    except ValueError:
        raise UserError(f"{label}: {redact_url(url)} is not a valid upload reference") from None
    if not store.exists(key):
        raise UserError(f"{label}: upload {redact_url(url)} was not found (upload the file again)")
    return key


def _fetch_media(url: str, store: ArtifactStore, output: ArtifactStore, files: JobFiles, work_dir: Path, label: str,
                 limits: IngestLimits, progress: ProgressFunction, checkpoint: Callable[[], None] | None) -> str:
    suffix = PurePosixPath(url.split("?")[0]).suffix.lower()
    name = label.replace("[", "").replace("] ", "_")  # validation[0] video -> validation0_video
    if re.fullmatch(r"\.[a-z0-9]{1,5}", suffix):
        name += suffix
    if url.startswith(UPLOAD_SCHEME) and output is store:  # the upload itself, no copy
        return store.uri(upload_key(url, store, label))
    with fetched(url, store, work_dir / "validation" / name, limits, label, progress, checkpoint) as path:
        return output.move_file(files.validation_media(name), path)


def _throttled(progress: ProgressFunction, unit: str, message: str) -> Callable[[int, int], None]:
    """A (done, total) callback that reports at most every PROGRESS_INTERVAL_S, and at the end (the
    context lets every report with a message through, and byte and file counts all carry one)."""
    throttle = Throttle()

    def report(done: int, total: int) -> None:
        if throttle.ready(force=bool(total) and done >= total):
            progress(done, total, unit, message)
    return report
