"""Credentials. Tenants call with their API key (`authorization: Bearer <key>`); services call each
other's internal RPCs with the service credential (`x-avlora-internal-token: <AVLORA_INTERNAL_TOKEN>`,
a shared secret from the deployment). API keys live in the ledger: stage services ask it
(LedgerService.Authenticate) and, like the ledger itself, remember a verified key for a minute."""

import hashlib
import time
from collections.abc import Awaitable, Callable

import grpc

from avlora.params import foreign_upload
from avlora.v1 import ledger_pb2, ledger_pb2_grpc

CACHE_S = 60.0
INTERNAL_HEADER = "x-avlora-internal-token"


def bearer_key(context) -> str:
    header = dict(context.invocation_metadata()).get("authorization", "")
    return header[7:].strip() if header.lower().startswith("bearer ") else ""


async def require_bearer_key(context) -> str:
    """The caller's bearer key; aborts with UNAUTHENTICATED when there is none."""
    key = bearer_key(context)
    if not key:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing 'authorization: Bearer <key>'")
    return key


def internal_metadata(token: str) -> list[tuple[str, str]]:
    return [(INTERNAL_HEADER, token)]


class KeyCache:
    """Tenants of recently verified keys (by sha256, never the key itself), for CACHE_S seconds."""

    def __init__(self, seconds: float = CACHE_S):
        self.seconds = seconds
        self._known: dict[str, tuple[str, float]] = {}

    @staticmethod
    def digest(key: str) -> str:
        return hashlib.sha256(key.encode()).hexdigest()

    def get(self, digest: str) -> str:
        tenant, at = self._known.get(digest, ("", 0.0))
        return tenant if tenant and time.monotonic() - at < self.seconds else ""

    def put(self, digest: str, tenant: str) -> None:
        if len(self._known) > 10_000:
            self._known.clear()
        self._known[digest] = (tenant, time.monotonic())

    async def tenant(self, context, lookup: Callable[[str], Awaitable[str | None]]) -> str:
        """The caller's tenant: its bearer key looked up (key -> tenant, or None when unknown) unless
        verified recently; aborts the call with UNAUTHENTICATED when the key is missing or unknown."""
        key = await require_bearer_key(context)
        digest = self.digest(key)
        if tenant := self.get(digest):
            return tenant
        tenant = await lookup(key)
        if not tenant:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "unknown API key")
        self.put(digest, tenant)
        return tenant


class LedgerAuthenticator:
    """A stage service's client of the ledger's internal port: authenticates tenants' keys and
    records uploads, with the service credential."""

    def __init__(self, ledger_address: str, internal_token: str):
        if not internal_token:
            raise SystemExit("AVLORA_INTERNAL_TOKEN is not set: the ledger's internal RPCs need it")
        self.ledger_address, self.metadata = ledger_address, internal_metadata(internal_token)
        self._ledger = None  # created on first use, on the server's event loop
        self.cache = KeyCache()

    @property
    def ledger(self) -> ledger_pb2_grpc.LedgerServiceStub:
        if self._ledger is None:
            self._ledger = ledger_pb2_grpc.LedgerServiceStub(grpc.aio.insecure_channel(self.ledger_address))
        return self._ledger

    async def tenant(self, context) -> str:
        """The caller's tenant; aborts the call with UNAUTHENTICATED when the key is missing or unknown."""
        async def ask_the_ledger(key: str) -> str | None:
            try:
                reply = await self.ledger.Authenticate(ledger_pb2.AuthenticateRequest(api_key=key),
                                                       metadata=self.metadata, timeout=10)
            except grpc.aio.AioRpcError as error:
                if error.code() == grpc.StatusCode.UNAUTHENTICATED:  # this service's token is good: the key is not
                    return None
                await context.abort(grpc.StatusCode.UNAVAILABLE, f"cannot check the API key: {error.details()}")
            return reply.tenant
        return await self.cache.tenant(context, ask_the_ledger)

    async def check_uploads(self, context, tenant: str, uploads: dict[str, str]) -> None:
        """Aborts with INVALID_ARGUMENT when an upload (`params.upload_refs`: id by field) is not the
        tenant's, as CreateJob does; UNAVAILABLE when the ledger cannot say."""
        if not uploads:
            return
        try:
            reply = await self.ledger.CheckUploads(ledger_pb2.CheckUploadsRequest(
                tenant=tenant, upload_ids=sorted(set(uploads.values()))), metadata=self.metadata, timeout=10)
        except grpc.aio.AioRpcError as error:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"cannot check the uploads, retry: {error.details()}")
        for field, upload_id in uploads.items():
            if upload_id in reply.not_owned:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, foreign_upload(field, upload_id))

    async def record_upload(self, context, upload_id: str, tenant: str, size: int) -> None:
        """Tells the ledger which tenant owns upload://<upload_id>; aborts with UNAVAILABLE if it cannot."""
        try:
            await self.ledger.RecordUpload(ledger_pb2.RecordUploadRequest(upload_id=upload_id, tenant=tenant, size=size),
                                           metadata=self.metadata, timeout=10)
        except grpc.aio.AioRpcError as error:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"cannot record the upload, retry: {error.details()}")
