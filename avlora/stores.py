"""The store a URL names: `s3://bucket/prefix` (avlora/store_s3.py) or a local directory
(avlora/store.py). The one place that knows both backends."""

from pathlib import Path

from avlora.store import ArtifactStore, LocalStore


def open_store(url: str | Path) -> ArtifactStore:
    """The store named by a URL: `s3://bucket/prefix` or a local directory path."""
    url = str(url)
    if url.startswith("s3://"):
        from avlora.store_s3 import S3Store  # boto3 is loaded only by processes that use S3
        return S3Store.from_url(url)
    return LocalStore(url.removeprefix("file://"))
