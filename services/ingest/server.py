"""The ingest service's direct RPC: a client-streaming upload of a zip or a validation file."""

import asyncio
import hashlib
import secrets

import grpc

from avlora.auth import LedgerAuthenticator
from avlora.settings import Settings
from avlora.store import UPLOAD_SCHEME, ArtifactStore
from avlora.v1 import stages_pb2, stages_pb2_grpc


class IngestServicer(stages_pb2_grpc.IngestServiceServicer):
    def __init__(self, store: ArtifactStore, max_upload_bytes: int, authenticator: LedgerAuthenticator,
                 settings: Settings | None = None):
        self.store, self.max_upload_bytes, self.authenticator = store, max_upload_bytes, authenticator
        self.settings = settings or Settings.from_env()

    async def Upload(self, request_iterator, context: grpc.aio.ServicerContext) -> stages_pb2.UploadResult:
        """Stores the streamed bytes at upload://<random id> once complete and checked."""
        tenant = await self.authenticator.tenant(context)
        upload_id = secrets.token_hex(16)
        digest, size, claimed = hashlib.sha256(), 0, ""
        with self.settings.scratch_dir("upload-") as scratch:
            part = scratch / upload_id
            with open(part, "wb") as out:
                async for chunk in request_iterator:
                    size += len(chunk.data)
                    if size > self.max_upload_bytes:
                        await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                            f"upload is over the limit of {self.max_upload_bytes} bytes")
                    digest.update(chunk.data)
                    out.write(chunk.data)
                    claimed = chunk.sha256.lower() or claimed
            if size == 0:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "upload is empty")
            if claimed and claimed != digest.hexdigest():
                await context.abort(grpc.StatusCode.DATA_LOSS, f"upload's sha256 {digest.hexdigest()} does "
                                    f"not match the {claimed} the client sent")
            await asyncio.to_thread(self.store.move_file, f"uploads/{upload_id}", part)
        await self.authenticator.record_upload(context, upload_id, tenant, size)  # CreateJob takes it from this tenant only
        return stages_pb2.UploadResult(uri=f"{UPLOAD_SCHEME}{upload_id}", size=size, sha256=digest.hexdigest())
