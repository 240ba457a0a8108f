"""The artifact store: every zip, extracted clip, cached latent, checkpoint and output is addressed
by a `store://<key>` URI, and every key of a job is named by `JobFiles`.

Two backends behind one interface, chosen by the store URL (`avlora.stores.open_store`):
- a local directory (the embedded default: `AVLORA_DATA_DIR/store`, or any path);
- an S3-compatible object store (`s3://bucket/prefix`, `avlora/store_s3.py`).

Code that needs a local file (PyAV, safetensors) reads through `local_file(key)` (the file itself
on disk, or a scratch copy removed afterwards) and writes a local file with `put_file`; large files
are streamed both ways, never held whole in memory.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

SCHEME = "store://"
UPLOAD_SCHEME = "upload://"
CHUNK_BYTES = 1 << 20


def store_key(uri_or_key: str) -> str:
    """The key of a store:// or upload:// URI (upload://ID is uploads/ID); refuses escapes."""
    if uri_or_key.startswith(UPLOAD_SCHEME):
        upload_id = uri_or_key[len(UPLOAD_SCHEME):]
        if not upload_id or "/" in upload_id or upload_id.startswith("."):
            raise ValueError(f"not an upload reference: {uri_or_key}")
        return f"uploads/{upload_id}"
    key = uri_or_key.removeprefix(SCHEME)
    parts = PurePosixPath(key).parts
    if not key or key.startswith("/") or ".." in parts or "." in parts:
        raise ValueError(f"not a store key: {uri_or_key}")
    return key


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    modified: float  # seconds since the epoch


class ArtifactStore(ABC):
    """Keys are relative POSIX paths; methods accept a key or its store:// / upload:// URI."""

    url: str  # what `avlora.stores.open_store` opens this store from

    def uri(self, key: str) -> str:
        return SCHEME + store_key(key)

    def key(self, uri_or_key: str) -> str:
        return store_key(uri_or_key)

    @abstractmethod
    def exists(self, uri_or_key: str) -> bool: ...

    @abstractmethod
    def size(self, uri_or_key: str) -> int: ...

    @abstractmethod
    def put_file(self, key: str, source: str | Path) -> str:
        """Copies a local file in (streamed; atomic: readers see all of it or nothing); its URI."""

    @abstractmethod
    def get_file(self, uri_or_key: str, dest: str | Path) -> Path:
        """Copies an artifact to a local file (streamed)."""

    @abstractmethod
    def open_read(self, uri_or_key: str, offset: int = 0) -> BinaryIO:
        """A binary stream of the artifact from byte `offset` on, for chunked reads."""

    @abstractmethod
    def list(self, prefix: str) -> list[str]:
        """The keys below `prefix` (a folder key), sorted."""

    @abstractmethod
    def objects(self, prefix: str) -> list[StoredObject]:
        """The artifacts below `prefix` with their sizes and modification times, sorted by key."""

    @abstractmethod
    def remove(self, uri_or_key: str) -> None:
        """Removes an artifact, or every artifact below a folder key."""

    def presigned_url(self, uri_or_key: str, expires_s: int) -> str | None:
        """A time-limited HTTPS URL for the artifact, where the backend has them."""
        return None

    def move_file(self, key: str, source: str | Path) -> str:
        """Puts a local file in and removes it (a rename when store and file share a disk)."""
        uri = self.put_file(key, source)
        Path(source).unlink()
        return uri

    def write_bytes(self, key: str, data: bytes) -> str:
        with tempfile.TemporaryDirectory() as scratch:
            path = Path(scratch) / "data"
            path.write_bytes(data)
            return self.put_file(key, path)

    def read_bytes(self, uri_or_key: str) -> bytes:
        with self.open_read(uri_or_key) as handle:
            return handle.read()

    def chunks(self, uri_or_key: str, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
        with self.open_read(uri_or_key) as handle:
            while chunk := handle.read(chunk_bytes):
                yield chunk

    @contextmanager
    def local_file(self, uri_or_key: str) -> Iterator[Path]:
        """A local path of the artifact for the duration of the block (a scratch copy, removed after)."""
        key = self.key(uri_or_key)
        with tempfile.TemporaryDirectory(prefix="avlora-") as scratch:
            yield self.get_file(key, Path(scratch) / PurePosixPath(key).name)

    def put_written(self, key: str, write: Callable[[Path], object]) -> str:
        """Calls `write(path)` on a scratch file named like the key, and puts that file in."""
        with tempfile.TemporaryDirectory(prefix="avlora-") as scratch:
            path = Path(scratch) / PurePosixPath(key).name
            write(path)
            return self.put_file(key, path)

    def reuse_or_write(self, key: str, make: Callable[[], bytes]) -> str:
        """The URI of `key`, written from `make()` only when no earlier try wrote it."""
        return self.uri(key) if self.exists(key) else self.write_bytes(key, make())

    def usage(self, prefix: str) -> int:
        """Bytes stored below a folder key."""
        return sum(item.size for item in self.objects(prefix))


class LocalStore(ArtifactStore):
    """A directory: the key is the relative path. `local_file` hands out the file itself."""

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.url = str(self.root)

    def _path(self, uri_or_key: str) -> Path:
        return self.root / self.key(uri_or_key)

    def path(self, uri_or_key: str) -> Path:
        """The artifact's file on this disk (its folder created, so it can be written directly)."""
        path = self._path(uri_or_key)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def exists(self, uri_or_key: str) -> bool:
        return self._path(uri_or_key).is_file()

    def size(self, uri_or_key: str) -> int:
        return self._path(uri_or_key).stat().st_size

    def put_file(self, key: str, source: str | Path) -> str:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
                shutil.copyfileobj(src, out, CHUNK_BYTES)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return self.uri(key)

    def move_file(self, key: str, source: str | Path) -> str:
        path = self.path(key)
        try:
            os.replace(source, path)  # the scratch folder is usually on the store's disk
        except OSError:  # another file system: copy
            return super().move_file(key, source)
        return self.uri(key)

    def get_file(self, uri_or_key: str, dest: str | Path) -> Path:
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self._path(uri_or_key), dest)
        return dest

    def open_read(self, uri_or_key: str, offset: int = 0) -> BinaryIO:
        handle = open(self._path(uri_or_key), "rb")
        handle.seek(offset)
        return handle

    @contextmanager
    def local_file(self, uri_or_key: str) -> Iterator[Path]:
        path = self._path(uri_or_key)
        if not path.is_file():
            raise FileNotFoundError(f"{self.uri(uri_or_key)} is not in the store")
        yield path

    def list(self, prefix: str) -> list[str]:
        folder = self._path(prefix)
        if not folder.is_dir():
            return []
        return sorted(p.relative_to(self.root).as_posix() for p in folder.rglob("*")
                      if p.is_file() and not p.name.startswith("."))

    def objects(self, prefix: str) -> list[StoredObject]:
        found = []
        for key in self.list(prefix):
            try:
                stat = (self.root / key).stat()
            except FileNotFoundError:  # removed since the listing
                continue
            found.append(StoredObject(key, stat.st_size, stat.st_mtime))
        return found

    def remove(self, uri_or_key: str) -> None:
        path = self._path(uri_or_key)
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


@dataclass(frozen=True)
class JobFiles:
    """Every key of one job's artifacts, by stage (`ingest`, `preprocess`, `train`) and outputs.

    Inputs (deleted when the job ends): `ingest/` (the zip, extracted files, validation media,
    manifest) and `preprocess/` (the cached training set). Kept for the retention period: `train/`
    (checkpoints, interval previews) and `outputs/`."""
    job_id: str

    @property
    def root(self) -> str:
        return f"jobs/{self.job_id}"

    def stage_dir(self, stage: str) -> str:
        return f"{self.root}/{stage}"

    # ingest
    @property
    def dataset_zip(self) -> str:
        return f"{self.root}/ingest/dataset.zip"

    @property
    def extracted_dir(self) -> str:
        return f"{self.root}/ingest/files"

    def extracted(self, name: str) -> str:
        return f"{self.extracted_dir}/{name}"

    def validation_media(self, name: str) -> str:
        return f"{self.root}/ingest/validation/{name}"

    @property
    def manifest(self) -> str:
        return f"{self.root}/ingest/manifest.pb"

    # preprocess
    def cached(self, folder: str, name: str) -> str:
        return f"{self.root}/preprocess/{folder}/{name}"

    @property
    def debug_dataset(self) -> str:
        return f"{self.root}/preprocess/debug_dataset.zip"

    @property
    def training_set(self) -> str:
        return f"{self.root}/preprocess/training_set.pb"

    # train
    @property
    def checkpoint(self) -> str:
        return f"{self.root}/train/checkpoint.pt"

    def interval_preview(self, step: int, suffix: str) -> str:
        return f"{self.root}/train/previews/step{step:06d}{suffix}"

    # outputs
    def output(self, name: str) -> str:
        return f"{self.root}/outputs/{name}"

    @property
    def outputs_record(self) -> str:
        return self.output("outputs.pb")

    @property
    def input_dirs(self) -> tuple[str, str]:
        return self.stage_dir("ingest"), self.stage_dir("preprocess")


class LocalFiles:
    """Local paths of store artifacts for the length of a stage: a local store's own files, or
    copies downloaded once into `scratch` (which the caller removes)."""

    def __init__(self, store: ArtifactStore, scratch: Path):
        self.store, self.scratch = store, Path(scratch)

    def __call__(self, uri_or_key: str) -> Path:
        if isinstance(self.store, LocalStore):
            return self.store._path(uri_or_key)
        path = self.scratch / self.store.key(uri_or_key)
        if not path.exists():
            self.store.get_file(uri_or_key, path)
        return path
