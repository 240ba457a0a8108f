"""InspectDataset on a real grpc.aio server: ingest's rules then every preprocessing check, with
the local store and with a real S3-compatible server."""

import re
import secrets

import grpc
import pytest

from avlora.params import V2AValidation, to_proto
from avlora.store import JobFiles, LocalStore
from avlora.store_s3 import S3Store
from avlora.v1 import ledger_pb2, stages_pb2, stages_pb2_grpc
from services.ingest.stage import ingest_dataset
from services.preprocess.server import PreprocessServicer
from tests.preprocess_fixtures import small_av2av, small_v2a
from tests.media import write_clip, zip_files
from tests.s3_server import s3_server  # noqa: F401  (fixture)


@pytest.fixture(params=["local", "s3"])
async def inspect(request, tmp_path, ledger_stack, authenticator):
    if request.param == "s3":
        server = request.getfixturevalue("s3_server")
        store = S3Store(server.bucket, f"inspect-{secrets.token_hex(4)}", client=server.client())
    else:
        store = LocalStore(tmp_path / "store")
    server = grpc.aio.server()
    servicer = PreprocessServicer(store, authenticator)
    stages_pb2_grpc.add_PreprocessServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    stub = stages_pb2_grpc.PreprocessServiceStub(channel)

    async def upload(files: dict, recorded: bool = True) -> str:
        """Puts a zip in the store as the ingest service's Upload does, recording it as the tenant's."""
        size = zip_files(tmp_path / "upload.zip", files).stat().st_size
        store.put_file("uploads/dataset", tmp_path / "upload.zip")
        if recorded:
            await authenticator.ledger.RecordUpload(ledger_pb2.RecordUploadRequest(
                upload_id="dataset", tenant=ledger_stack["tenant"], size=size), metadata=authenticator.metadata)
        return "upload://dataset"

    async def call(params_message, api_key=ledger_stack["api_key"]):
        return await stub.InspectDataset(stages_pb2.InspectDatasetRequest(params=params_message), timeout=60,
                                         metadata=[("authorization", f"Bearer {api_key}")])

    yield store, upload, call
    await channel.close()
    await server.stop(None)


async def test_a_good_dataset_is_reported_ok_and_leaves_nothing_behind(inspect, tmp_path):
    store, upload, call = inspect
    url = await upload({"a_start.mp4": write_clip(tmp_path / "a_start.mp4", frames=12),
                  "a_end.mp4": write_clip(tmp_path / "a_end.mp4", frames=12), "a.txt": "neon",
                  "__MACOSX/._a_end.mp4": b"junk"})
    report = await call(to_proto(small_av2av(training_data_url=url, trigger_phrase="st9")))
    assert report.ok and [(c.name, c.accepted, c.caption) for c in report.clips] == [("a", True, "st9 neon")]
    assert store.list("jobs") == []


async def test_a_dataset_error_is_a_report_not_an_rpc_failure(inspect, tmp_path):
    _, upload, call = inspect
    url = await upload({"sample03_start.mp4": write_clip(tmp_path / "s.mp4", frames=12),
                  "sample03_end.mp4": write_clip(tmp_path / "e.mp4", frames=12, audio_rate=None)})
    report = await call(to_proto(small_av2av(training_data_url=url)))
    assert not report.ok and list(report.errors) == ["sample03_end.mp4 has no audio track"]


async def test_names_in_a_report_carry_no_control_characters(inspect, tmp_path):
    _, upload, call = inspect
    clip = write_clip(tmp_path / "e.mp4", frames=12)
    url = await upload({"red\x1b[31m\r\n_end.mp4": clip, "notes\x07.pdf": b"%PDF"})
    report = await call(to_proto(small_av2av(training_data_url=url)))
    assert not report.ok
    assert list(report.errors) == [
        "red\\x1b[31m\\x0d\\x0a_end.mp4 is a target missing its reference (no red\\x1b[31m\\x0d\\x0a_start clip)"]
    texts = [*report.errors, *(f.name + f.reason for f in report.ignored), *(c.name + c.reason for c in report.clips)]
    assert texts and not any(re.search(r"[\x00-\x1f\x7f]", text) for text in texts), texts
    assert [f.name for f in report.ignored] == ["notes\\x07.pdf"]


async def test_an_ingest_error_is_a_report_too(inspect):
    _, upload, call = inspect
    url = await upload({"notes.txt": "no videos here"})
    report = await call(to_proto(small_v2a(training_data_url=url)))
    assert not report.ok and len(report.errors) == 1


async def test_a_bad_parameter_is_invalid_argument(inspect):
    _, _, call = inspect
    message = to_proto(small_v2a())
    message.v2a.number_of_steps = 5
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await call(message)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "number_of_steps" in error.value.details()


async def test_inspect_needs_a_valid_key(inspect):
    _, upload, call = inspect
    url = await upload({"notes.txt": "x"})
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await call(to_proto(small_v2a(training_data_url=url)), api_key="avl_wrong")
    assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_an_upload_that_is_not_the_tenants_is_refused(inspect, tmp_path):
    """(another tenant's, or a file that no Upload of this tenant put there)"""
    _, upload, call = inspect
    url = await upload({"a.mp4": write_clip(tmp_path / "a.mp4", frames=12)}, recorded=False)
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await call(to_proto(small_v2a(training_data_url=url)))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.value.details() == "training_data_url: no upload upload://dataset of this tenant"


def test_inspection_on_an_object_store_writes_nothing_there(tmp_path, s3_server):
    """InspectDataset's ingest reads the uploads from S3 but keeps what it extracts (and the
    validation media) on local disk: the Manifest names only local files, and S3 holds no job file."""
    remote = S3Store(s3_server.bucket, f"inspect-{secrets.token_hex(4)}", client=s3_server.client())
    remote.put_file("uploads/data", zip_files(tmp_path / "data.zip", {"a.mp4": write_clip(tmp_path / "a.mp4", frames=12)}))
    remote.put_file("uploads/look", write_clip(tmp_path / "look.mp4", frames=12))
    local = LocalStore(tmp_path / "local")
    params = small_v2a(training_data_url="upload://data", validation=[V2AValidation(prompt="p", video_url="upload://look")])
    manifest = ingest_dataset(params, remote, JobFiles("inspect-x"), tmp_path / "work", output_store=local)
    uris = [entry.uri for entry in manifest.files] + [entry.video_uri for entry in manifest.validation]
    assert len(uris) == 2 and all(local.exists(local.key(uri)) for uri in uris)
    assert remote.list("jobs") == [] and sorted(remote.list("uploads")) == ["uploads/data", "uploads/look"]
