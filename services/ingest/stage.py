"""The ingest stage: fetch the dataset zip and the validation media, extract the zip safely, and
store a Manifest for preprocessing."""

import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from avlora.params import JobParams
from avlora.store import UPLOAD_SCHEME, ArtifactStore
from avlora.v1 import dataset_pb2
from avlora.worker import StageContext, UserError
from services.ingest import archive
from services.ingest.fetch import download
from services.ingest.limits import IngestLimits

PROGRESS_INTERVAL_S = 0.5
ProgressFunction = Callable[..., None]  # (done, total, unit, message)


def run(ctx: StageContext) -> str:
    """Ingests the job's dataset and returns the Manifest's URI (reused when already written)."""
    key = f"jobs/{ctx.job_id}/ingest/manifest.pb"
    if ctx.store.exists(key):
        return ctx.store.uri(key)
    manifest = ingest_dataset(ctx.params, ctx.store, ctx.store.job_dir(ctx.job_id, "ingest"),
                              on_progress=ctx.progress, on_log=ctx.log, checkpoint=ctx.raise_if_cancelled,
                              job_id=ctx.job_id)
    return ctx.store.write_bytes(key, manifest.SerializeToString())


def ingest_dataset(params: JobParams, store: ArtifactStore, work_dir: Path,
                   on_progress: ProgressFunction | None = None, on_log: Callable[[str], None] | None = None,
                   checkpoint: Callable[[], None] | None = None, job_id: str = "",
                   limits: IngestLimits | None = None) -> dataset_pb2.Manifest:
    """Fetches, checks and extracts the dataset into `work_dir` (a folder inside the store) and
    fetches the validation media; returns the Manifest. Raises UserError for bad input."""
    limits = limits or IngestLimits.from_env()
    work_dir = Path(work_dir)
    progress = on_progress or (lambda *args, **kwargs: None)
    archive_path = fetch_to(params.training_data_url, store, work_dir / "dataset.zip", limits, "dataset",
                            progress, checkpoint)
    manifest = dataset_pb2.Manifest(job_id=job_id, archive_uri=_uri(store, archive_path))
    files_dir = work_dir / "files"
    shutil.rmtree(files_dir, ignore_errors=True)  # a redelivered job extracts again from scratch
    try:
        with archive.open_archive(archive_path) as zip_file:
            plan = archive.plan_archive(zip_file, archive_path.stat().st_size, params.mode, limits)
            on_file = _throttled(progress, "files", "extracting")
            for entry, path, size in archive.extract(zip_file, plan, files_dir, limits, on_file, checkpoint):
                manifest.files.add(name=entry.name, uri=_uri(store, path), size=size, kind=entry.kind)
    except BaseException:
        shutil.rmtree(files_dir, ignore_errors=True)
        raise
    manifest.ignored.extend(plan.ignored)
    for item in plan.ignored:
        if on_log:
            on_log(f"ignored {item.name}: {item.reason}")
    for index, entry in enumerate(params.validation):
        media = manifest.validation.add(index=index, prompt=entry.prompt)
        video_url = entry.video_url if params.mode == "v2a" else entry.reference_video_url
        media.video_uri = _fetch_media(video_url, store, work_dir, f"validation[{index}] video", limits,
                                       progress, checkpoint)
        audio_url = getattr(entry, "reference_audio_url", None)
        if audio_url:
            media.audio_uri = _fetch_media(audio_url, store, work_dir, f"validation[{index}] audio", limits,
                                           progress, checkpoint)
    return manifest


def fetch_to(url: str, store: ArtifactStore, dest: Path, limits: IngestLimits, label: str,
             progress: ProgressFunction, checkpoint: Callable[[], None] | None) -> Path:
    """The local path of `url`: an upload's own file, or `dest` downloaded (kept from an earlier try)."""
    if url.startswith(UPLOAD_SCHEME):
        try:
            path = store.root / store.key(url)
        except ValueError:
            raise UserError(f"{label}: {url} is not a valid upload reference") from None
        if not path.is_file():
            raise UserError(f"{label}: upload {url} was not found (upload the file again)")
        return path
    if not url.startswith(("http://", "https://")):
        raise UserError(f"{label}: unsupported URL {url} (use http://, https:// or upload://)")
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        download(url, dest, limits, label, _throttled(progress, "bytes", f"downloading {label}"), checkpoint)
    return dest


def _fetch_media(url: str, store: ArtifactStore, work_dir: Path, label: str, limits: IngestLimits,
                 progress: ProgressFunction, checkpoint: Callable[[], None] | None) -> str:
    suffix = PurePosixPath(url.split("?")[0]).suffix.lower()
    name = label.replace("[", "").replace("] ", "_")  # validation[0] video -> validation0_video
    if re.fullmatch(r"\.[a-z0-9]{1,5}", suffix):
        name += suffix
    return _uri(store, fetch_to(url, store, work_dir / "validation" / name, limits, label, progress, checkpoint))


def _uri(store: ArtifactStore, path: Path) -> str:
    return store.uri(path.resolve().relative_to(store.root).as_posix())


def _throttled(progress: ProgressFunction, unit: str, message: str) -> Callable[[int, int], None]:
    """A (done, total) callback that reports at most every PROGRESS_INTERVAL_S, and at the end."""
    last = 0.0

    def report(done: int, total: int) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= PROGRESS_INTERVAL_S or (total and done >= total):
            last = now
            progress(done, total, unit, message)
    return report
