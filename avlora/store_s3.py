"""The artifact store on an S3-compatible object store (`AVLORA_STORE_URL=s3://bucket/prefix`).

The endpoint, region and credentials come from the usual AWS variables (AWS_ENDPOINT_URL,
AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, or any other source boto3 reads). Files go
in and out with boto3's managed transfers (multipart above 16 MiB, streamed from and to disk), so a
checkpoint or a zip is never held whole in memory."""

from datetime import datetime
from pathlib import Path
from typing import BinaryIO

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError

from avlora.store import ArtifactStore, StoredObject

TRANSFER = TransferConfig(multipart_threshold=16 << 20, multipart_chunksize=16 << 20, max_concurrency=4)


def _missing(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound")


class S3Store(ArtifactStore):
    def __init__(self, bucket: str, prefix: str = "", client=None):
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        # Endpoint, region and credentials: botocore reads AWS_ENDPOINT_URL(_S3), AWS_REGION, ... itself.
        self.client = client or boto3.client(
            "s3", region_name=None if boto3.session.Session().region_name else "us-east-1",
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                          retries={"max_attempts": 5, "mode": "standard"}))

    @classmethod
    def from_url(cls, url: str) -> "S3Store":
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        if not bucket:
            raise ValueError(f"not an s3://bucket/prefix URL: {url}")
        return cls(bucket, prefix)

    def _object(self, uri_or_key: str) -> str:
        key = self.key(uri_or_key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _key_of(self, object_name: str) -> str:
        return object_name[len(self.prefix) + 1:] if self.prefix else object_name

    def exists(self, uri_or_key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._object(uri_or_key))
            return True
        except ClientError as error:
            if _missing(error):
                return False
            raise

    def size(self, uri_or_key: str) -> int:
        try:
            return self.client.head_object(Bucket=self.bucket, Key=self._object(uri_or_key))["ContentLength"]
        except ClientError as error:
            if _missing(error):
                raise FileNotFoundError(f"{self.uri(uri_or_key)} is not in the store") from None
            raise

    def put_file(self, key: str, source: str | Path) -> str:
        self.client.upload_file(str(source), self.bucket, self._object(key), Config=TRANSFER)
        return self.uri(key)

    def get_file(self, uri_or_key: str, dest: str | Path) -> Path:
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.client.download_file(self.bucket, self._object(uri_or_key), str(dest), Config=TRANSFER)
        except ClientError as error:
            if _missing(error):
                raise FileNotFoundError(f"{self.uri(uri_or_key)} is not in the store") from None
            raise
        return dest

    def open_read(self, uri_or_key: str, offset: int = 0) -> BinaryIO:
        ranged = {"Range": f"bytes={offset}-"} if offset else {}
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._object(uri_or_key), **ranged)["Body"]
        except ClientError as error:
            if _missing(error):
                raise FileNotFoundError(f"{self.uri(uri_or_key)} is not in the store") from None
            raise

    def objects(self, prefix: str) -> list[StoredObject]:
        folder = self._object(prefix).rstrip("/") + "/"
        found = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=folder):
            for item in page.get("Contents", []):
                modified: datetime = item["LastModified"]
                found.append(StoredObject(self._key_of(item["Key"]), item["Size"], modified.timestamp()))
        return sorted(found, key=lambda item: item.key)

    def list(self, prefix: str) -> list[str]:
        return [item.key for item in self.objects(prefix)]

    def remove(self, uri_or_key: str) -> None:
        names = [self._object(item.key) for item in self.objects(uri_or_key)] + [self._object(uri_or_key)]
        for start in range(0, len(names), 1000):
            self.client.delete_objects(Bucket=self.bucket, Delete={
                "Objects": [{"Key": name} for name in names[start:start + 1000]], "Quiet": True})

    def presigned_url(self, uri_or_key: str, expires_s: int) -> str | None:
        return self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": self._object(uri_or_key)}, ExpiresIn=int(expires_s))
