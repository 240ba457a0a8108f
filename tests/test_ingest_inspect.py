"""InspectDataset downloads like ingest: on a real grpc.aio server (a real ledger checks the key),
slow URLs cannot exhaust it. Calls beyond its pool and queue (or a tenant's share) are refused at
once, and a call whose client gave up stops downloading and checking, and frees its place."""

import asyncio
import contextlib
import threading
import zipfile

import grpc
import pytest
from test_ingest_fetch import Handler, Server
from test_preprocess_memory import write_looped_clip

from avlora.auth import LedgerAuthenticator
from avlora.params import to_proto
from avlora.store import LocalStore
from avlora.v1 import stages_pb2, stages_pb2_grpc
from services.ingest.limits import IngestLimits
from services.preprocess.server import PreprocessServicer
from tests.preprocess_fixtures import small_v2a

NOT_A_ZIP = b"not a zip"


@contextlib.asynccontextmanager
async def inspection_service(tmp_path, authenticator: LedgerAuthenticator, limits: IngestLimits, files: dict):
    """A local HTTP server with `files` (and its /drip URL) and a real PreprocessService in front of
    the ledger: yields (the HTTP server, a function calling InspectDataset on a URL path)."""
    httpd = Server(("127.0.0.1", 0), Handler)
    httpd.files, httpd.hits = files, {}
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    server = grpc.aio.server()
    stages_pb2_grpc.add_PreprocessServiceServicer_to_server(
        PreprocessServicer(LocalStore(tmp_path / "store"), authenticator, limits), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    stub = stages_pb2_grpc.PreprocessServiceStub(channel)

    def call(api_key: str, path: str, timeout: float, **params):
        request = stages_pb2.InspectDatasetRequest(params=to_proto(small_v2a(training_data_url=base + path, **params)))
        return stub.InspectDataset(request, timeout=timeout, metadata=[("authorization", f"Bearer {api_key}")])

    try:
        yield httpd, call
    finally:
        await channel.close()
        await server.stop(None)
        httpd.shutdown()


async def test_slow_inspections_cannot_exhaust_the_server(tmp_path, ledger_stack, authenticator):
    limits = IngestLimits(allow_networks="127.0.0.0/8", inspect_workers=1, inspect_queue=1, inspect_per_tenant=3)
    async with inspection_service(tmp_path, authenticator, limits, {"notes.zip": NOT_A_ZIP}) as (httpd, inspect):
        def call(path: str, timeout: float):
            return inspect(ledger_stack["api_key"], path, timeout)

        slow = [asyncio.ensure_future(call("/drip", timeout=3)) for _ in range(2)]  # one running, one waiting
        await asyncio.sleep(1.5)
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await call("/files/notes.zip", timeout=2)
        assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert error.value.details() == ("too many InspectDataset calls in progress (limit 1 running + 1 waiting); "
                                         "retry later")
        for future in slow:
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await future
            assert error.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        await asyncio.sleep(0.5)
        report = await call("/files/notes.zip", timeout=10)  # the abandoned downloads stopped: room again
        assert not report.ok and report.errors == ["dataset archive is not a zip file"]
        assert httpd.hits["/drip"] == 1, "the waiting call never started downloading once its client was gone"


async def test_one_tenants_slow_inspections_leave_room_for_the_others(tmp_path, make_stack):
    """At the default limits (4 running + 8 waiting, 2 per tenant): a tenant sending 8 slow
    inspections holds 2 places and is refused the rest at once; another tenant's inspection is
    answered meanwhile."""
    keys = {"acme": "avl_acme_" + "a" * 24, "globex": "avl_globex_" + "g" * 24}
    info = make_stack(services=("ledger",), extra_env={
        "AVLORA_LEDGER_KEYS": ",".join(f"{tenant}:{key}" for tenant, key in keys.items())}).info
    authenticator = LedgerAuthenticator(info["ledger_internal_addr"], info["internal_token"])
    async with inspection_service(tmp_path, authenticator, IngestLimits(allow_networks="127.0.0.0/8"),
                                  {"notes.zip": NOT_A_ZIP}) as (_, inspect):
        def call(tenant: str, path: str, timeout: float):
            return inspect(keys[tenant], path, timeout)

        slow = [asyncio.ensure_future(call("acme", "/drip", timeout=6)) for _ in range(8)]
        await asyncio.wait(slow, timeout=1.5)
        refused = [future for future in slow if future.done()]
        assert len(refused) == 6
        for future in refused:
            error = future.exception()
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert error.details() == "too many InspectDataset calls of this tenant in progress (limit 2); retry later"
        report = await call("globex", "/files/notes.zip", timeout=3)  # while acme's two still drip
        assert not report.ok and report.errors == ["dataset archive is not a zip file"]
        assert not any(future.done() for future in slow if future not in refused)
        for future in slow:
            if future not in refused:
                with pytest.raises(grpc.aio.AioRpcError) as error:
                    await future
                assert error.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        await asyncio.sleep(0.5)
        report = await call("acme", "/files/notes.zip", timeout=10)  # its places are free again
        assert not report.ok and report.errors == ["dataset archive is not a zip file"]


async def test_an_inspection_stops_soon_after_its_client_gives_up_while_it_checks_a_long_clip(tmp_path, ledger_stack,
                                                                                              authenticator):
    """Scene detection of ten minutes of 1080p takes over 10 s; the client gives up after 2 s. With
    one place in all, the next call is answered (not refused) half a second later."""
    write_looped_clip(tmp_path / "long.mp4", loops=600)
    with zipfile.ZipFile(tmp_path / "long.zip", "w") as archive:
        archive.write(tmp_path / "long.mp4", "long.mp4")
    limits = IngestLimits(allow_networks="127.0.0.0/8", inspect_workers=1, inspect_queue=0, inspect_per_tenant=1)
    files = {"long.zip": (tmp_path / "long.zip").read_bytes(), "notes.zip": NOT_A_ZIP}
    async with inspection_service(tmp_path, authenticator, limits, files) as (_, inspect):
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await inspect(ledger_stack["api_key"], "/files/long.zip", timeout=2, split_input_into_scenes=True,
                          split_input_duration_threshold=1.0)
        assert error.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        await asyncio.sleep(0.5)
        report = await inspect(ledger_stack["api_key"], "/files/notes.zip", timeout=10)
        assert not report.ok and report.errors == ["dataset archive is not a zip file"]
