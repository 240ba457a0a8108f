"""The Upload RPC on a real grpc.aio server: chunked upload, checksum, size limit, and the upload://
reference used as training_data_url and as validation media."""

import hashlib
from pathlib import Path

import grpc
import pytest
from media import write_clip, zip_files

from avlora.params import AV2AVParams
from avlora.store import LocalStore, JobFiles
from avlora.v1 import stages_pb2, stages_pb2_grpc
from services.ingest.limits import IngestLimits
from services.ingest.server import IngestServicer
from services.ingest.stage import ingest_dataset

LIMIT = 1 << 20


@pytest.fixture
def store(tmp_path) -> LocalStore:
    return LocalStore(tmp_path / "store")


class AuthenticatedIngest:
    """The ingest stub, sending the tenant's key on every call."""

    def __init__(self, stub, api_key: str):
        self.stub, self.metadata = stub, [("authorization", f"Bearer {api_key}")]

    def Upload(self, request_iterator, **kwargs):
        return self.stub.Upload(request_iterator, metadata=self.metadata, **kwargs)


@pytest.fixture
async def raw_ingest_stub(store, authenticator):
    server = grpc.aio.server()
    servicer = IngestServicer(store, max_upload_bytes=LIMIT, authenticator=authenticator)
    stages_pb2_grpc.add_IngestServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield stages_pb2_grpc.IngestServiceStub(channel)
    await server.stop(None)


@pytest.fixture
def ingest_stub(raw_ingest_stub, ledger_stack):
    return AuthenticatedIngest(raw_ingest_stub, ledger_stack["api_key"])


async def test_upload_needs_a_valid_key(raw_ingest_stub, store):
    for metadata in ([], [("authorization", "Bearer avl_unknown")]):
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await raw_ingest_stub.Upload(chunks(b"data", "x.zip"), metadata=metadata)
        assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert stored_uploads(store) == []


def chunks(data: bytes, filename: str, sha256: str = "", size: int = 64 * 1024):
    pieces = [data[start:start + size] for start in range(0, len(data), size)] or [b""]
    for index, piece in enumerate(pieces):
        yield stages_pb2.UploadChunk(filename=filename if index == 0 else "", data=piece,
                                     sha256=sha256 if index == len(pieces) - 1 else "")


def stored_uploads(store: LocalStore) -> list[Path]:
    return sorted((store.root / "uploads").glob("*")) if (store.root / "uploads").exists() else []


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return write_clip(tmp_path_factory.mktemp("clips") / "ref.mp4", frames=9)


async def test_upload_stores_the_bytes_and_feeds_ingest(ingest_stub, store, tmp_path, clip):
    data = zip_files(tmp_path / "pairs.zip", {"a_start.mp4": clip, "a_end.mp4": clip, "a.txt": "x"}).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    result = await ingest_stub.Upload(chunks(data, "pairs.zip", sha256=digest, size=1000))
    assert result.uri.startswith("upload://") and result.size == len(data) and result.sha256 == digest
    assert store.read_bytes(result.uri) == data and len(stored_uploads(store)) == 1
    video = await ingest_stub.Upload(chunks(clip.read_bytes(), "ref.mp4"))  # no checksum sent: still fine
    params = AV2AVParams(training_data_url=result.uri, validation=[
        {"prompt": "p", "reference_video_url": video.uri, "reference_audio_url": video.uri}])
    manifest = ingest_dataset(params, store, JobFiles("job1"), tmp_path / "scratch", limits=IngestLimits())
    assert sorted(item.name for item in manifest.files) == ["a.txt", "a_end.mp4", "a_start.mp4"]
    assert store.read_bytes(manifest.validation[0].video_uri) == clip.read_bytes()
    assert manifest.validation[0].audio_uri == manifest.validation[0].video_uri


async def test_checksum_mismatch_is_refused(ingest_stub, store):
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await ingest_stub.Upload(chunks(b"PK" * 1000, "a.zip", sha256="00" * 32))
    assert error.value.code() == grpc.StatusCode.DATA_LOSS
    assert f"does not match the {'00' * 32} the client sent" in error.value.details()
    assert stored_uploads(store) == []


async def test_oversized_upload_is_refused_and_the_service_keeps_serving(ingest_stub, store):
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await ingest_stub.Upload(chunks(b"a" * (LIMIT + 1), "big.zip"))
    assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.value.details() == f"upload is over the limit of {LIMIT} bytes"
    assert stored_uploads(store) == []
    result = await ingest_stub.Upload(chunks(b"a" * LIMIT, "fits.zip"))
    assert result.size == LIMIT
    assert [path.name for path in stored_uploads(store)] == [result.uri.removeprefix("upload://")]


async def test_empty_upload_is_refused(ingest_stub, store):
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await ingest_stub.Upload(chunks(b"", "empty.zip"))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and error.value.details() == "upload is empty"
    assert stored_uploads(store) == []
