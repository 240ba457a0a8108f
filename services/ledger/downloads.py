"""Outputs a client can fetch from anywhere: the DownloadArtifact RPC (chunked, any store) and,
with an object store, presigned GET URLs in every Job reply."""

import asyncio
import io
import time
from pathlib import PurePosixPath

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from avlora.job_state import output_uris
from avlora.store import CHUNK_BYTES, ArtifactStore
from avlora.v1 import jobs_pb2


def find_output(outputs: jobs_pb2.Outputs, name: str) -> tuple[str, str] | None:
    """(field, URI) of the output named by its field name, file name or URI; None if not an output."""
    for field, uri in output_uris(outputs).items():
        if name in (field, uri, PurePosixPath(uri).name):
            return field, uri
    return None


def add_download_urls(store: ArtifactStore, ttl: int, message: jobs_pb2.Job) -> jobs_pb2.Job:
    """Fills the job's presigned URLs (valid `ttl` seconds) where the store has them (an object store)."""
    for field, uri in output_uris(message.outputs).items():
        url = store.presigned_url(uri, ttl)
        if url is None:
            return message
        message.download_urls[field] = url
    if message.download_urls:
        message.download_urls_expire_at.CopyFrom(Timestamp(seconds=int(time.time()) + ttl))
    return message


async def download_artifact(service, request, context):
    """JobService.DownloadArtifact: the caller's own job only (another tenant's is NOT_FOUND); the
    whole file, or the range `offset`, `length` (0: to the end) of it."""
    tenant = await service._tenant(context)
    job = await service._own_job(tenant, request.job_id, context)
    found = find_output(jobs_pb2.Outputs.FromString(job.outputs or b""), request.name)
    if found is None:
        await context.abort(grpc.StatusCode.NOT_FOUND, f"job {request.job_id!r} has no output {request.name!r}")
    if request.offset < 0 or request.length < 0:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "offset and length: must not be negative")
    store, uri = service.store, found[1]
    try:
        size = await asyncio.to_thread(store.size, uri)
        left = min(request.length or size, max(0, size - request.offset))
        handle = await asyncio.to_thread(store.open_read, uri, request.offset) if left else io.BytesIO()
    except FileNotFoundError:
        await context.abort(grpc.StatusCode.NOT_FOUND,
                            f"output {request.name!r} of job {request.job_id!r} is gone (retention period over)")
    with handle:  # the first chunk names the file and its size (and may be empty)
        data = await asyncio.to_thread(handle.read, min(CHUNK_BYTES, left))
        left -= len(data)
        yield jobs_pb2.ArtifactChunk(name=PurePosixPath(uri).name, size=size, data=data)
        while left > 0 and (data := await asyncio.to_thread(handle.read, min(CHUNK_BYTES, left))):
            left -= len(data)
            yield jobs_pb2.ArtifactChunk(data=data)
