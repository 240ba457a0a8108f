"""Outputs a client can fetch from anywhere: the DownloadArtifact RPC (chunked, any store) and,
with an object store, presigned GET URLs in every Job reply."""

import asyncio
import time
from functools import cache
from pathlib import PurePosixPath

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from avlora.settings import Settings
from avlora.store import CHUNK_BYTES, ArtifactStore, open_store
from avlora.v1 import jobs_pb2


def url_ttl_s() -> int:
    return Settings.from_env().download_url_ttl_s


@cache
def job_store() -> ArtifactStore:
    return open_store(Settings.from_env().store_url)


def output_uris(outputs: jobs_pb2.Outputs) -> dict[str, str]:
    """Field name -> store URI of every output the job lists."""
    return {field.name: value for field, value in outputs.ListFields() if isinstance(value, str) and value}


def find_output(outputs: jobs_pb2.Outputs, name: str) -> tuple[str, str] | None:
    """(field, URI) of the output named by its field name, file name or URI; None if not an output."""
    for field, uri in output_uris(outputs).items():
        if name in (field, uri, PurePosixPath(uri).name):
            return field, uri
    return None


def add_download_urls(message: jobs_pb2.Job, store: ArtifactStore | None = None) -> jobs_pb2.Job:
    """Fills the job's presigned URLs where the store has them (an object store)."""
    store = store or job_store()
    ttl = url_ttl_s()
    for field, uri in output_uris(message.outputs).items():
        url = store.presigned_url(uri, ttl)
        if url is None:
            return message
        message.download_urls[field] = url
    if message.download_urls:
        message.download_urls_expire_at.CopyFrom(Timestamp(seconds=int(time.time()) + ttl))
    return message


async def download_artifact(service, request, context):
    """JobService.DownloadArtifact: the caller's own job only (another tenant's is NOT_FOUND)."""
    tenant = await service._tenant(context)
    job = await service._own_job(tenant, request.job_id, context)
    found = find_output(jobs_pb2.Outputs.FromString(job.outputs or b""), request.name)
    if found is None:
        await context.abort(grpc.StatusCode.NOT_FOUND, f"job {request.job_id!r} has no output {request.name!r}")
    store = job_store()
    try:
        handle = await asyncio.to_thread(store.open_read, found[1])
        size = await asyncio.to_thread(store.size, found[1])
    except FileNotFoundError:
        await context.abort(grpc.StatusCode.NOT_FOUND,
                            f"output {request.name!r} of job {request.job_id!r} is gone (retention period over)")
    with handle:
        first = True
        while True:
            data = await asyncio.to_thread(handle.read, CHUNK_BYTES)
            if not data and not first:
                return
            yield jobs_pb2.ArtifactChunk(name=PurePosixPath(found[1]).name if first else "",
                                         size=size if first else 0, data=data)
            first = False
            if not data:
                return
