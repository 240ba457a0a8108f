"""The artifact store: every zip, extracted clip, cached latent, checkpoint and output is
addressed by a `store://<key>` URI. The embedded default is a local directory; an object store
would implement the same methods (scale-out path)."""

import os
import shutil
import tempfile
from pathlib import Path

SCHEME = "store://"
UPLOAD_SCHEME = "upload://"


class ArtifactStore:
    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def uri(self, key: str) -> str:
        return SCHEME + key.lstrip("/")

    def key(self, uri_or_key: str) -> str:
        """The key of a store:// or upload:// URI (upload://ID is uploads/ID)."""
        if uri_or_key.startswith(UPLOAD_SCHEME):
            upload_id = uri_or_key[len(UPLOAD_SCHEME):]
            if not upload_id or "/" in upload_id or upload_id.startswith("."):
                raise ValueError(f"not an upload reference: {uri_or_key}")
            return f"uploads/{upload_id}"
        key = uri_or_key.removeprefix(SCHEME)
        if key.startswith("/") or ".." in Path(key).parts:
            raise ValueError(f"not a store key: {uri_or_key}")
        return key

    def path(self, uri_or_key: str) -> Path:
        """Local path of an artifact (parents created, so it can be written directly)."""
        path = self.root / self.key(uri_or_key)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def exists(self, uri_or_key: str) -> bool:
        return (self.root / self.key(uri_or_key)).exists()

    def write_bytes(self, key: str, data: bytes) -> str:
        """Writes atomically (temp file + rename) and returns the URI."""
        path = self.path(key)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        return self.uri(key)

    def read_bytes(self, uri_or_key: str) -> bytes:
        return (self.root / self.key(uri_or_key)).read_bytes()

    def put_file(self, key: str, source: str | Path) -> str:
        """Copies a local file in atomically and returns its URI."""
        path = self.path(key)
        tmp = path.with_name(f".{path.name}.part")
        shutil.copyfile(source, tmp)
        os.replace(tmp, path)
        return self.uri(key)

    def job_dir(self, job_id: str, stage: str) -> Path:
        """A job's working directory for one stage (created)."""
        path = self.path(f"jobs/{job_id}/{stage}/.keep").parent
        return path

    def remove(self, uri_or_key: str) -> None:
        path = self.root / self.key(uri_or_key)
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
