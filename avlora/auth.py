"""API-key authentication for the stage services' user-facing RPCs: keys live in the ledger, so
they ask it (LedgerService.Authenticate) and remember the answer for a minute."""

import hashlib
import time

import grpc

from avlora.v1 import stages_pb2, stages_pb2_grpc

CACHE_S = 60.0


def bearer_key(context) -> str:
    header = dict(context.invocation_metadata()).get("authorization", "")
    return header[7:].strip() if header.lower().startswith("bearer ") else ""


class LedgerAuthenticator:
    def __init__(self, ledger_address: str):
        self.ledger_address = ledger_address
        self._ledger = None  # created on first use, on the server's event loop
        self._known: dict[str, tuple[str, float]] = {}

    @property
    def ledger(self) -> stages_pb2_grpc.LedgerServiceStub:
        if self._ledger is None:
            self._ledger = stages_pb2_grpc.LedgerServiceStub(grpc.aio.insecure_channel(self.ledger_address))
        return self._ledger

    async def tenant(self, context) -> str:
        """The caller's tenant; aborts the call with UNAUTHENTICATED when the key is missing or unknown."""
        key = bearer_key(context)
        if not key:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing 'authorization: Bearer <key>'")
        digest = hashlib.sha256(key.encode()).hexdigest()
        tenant, at = self._known.get(digest, ("", 0.0))
        if tenant and time.monotonic() - at < CACHE_S:
            return tenant
        try:
            reply = await self.ledger.Authenticate(stages_pb2.AuthenticateRequest(api_key=key), timeout=10)
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.UNAUTHENTICATED:
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, "unknown API key")
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"cannot check the API key: {error.details()}")
        self._known[digest] = (reply.tenant, time.monotonic())
        return reply.tenant
