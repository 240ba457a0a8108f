"""A ledger whose database is gone: a real gRPC server in front of a real SQLAlchemy engine pointed
at a PostgreSQL port nobody listens on, or at a SQLite file that cannot be opened. Callers get
UNAVAILABLE, never the SQL or the host."""

import grpc
import pytest

from avlora.stack import free_port
from avlora.store import LocalStore
from avlora.v1 import jobs_pb2, jobs_pb2_grpc, ledger_pb2, ledger_pb2_grpc, params_pb2
from services.ledger.api import JobChanges, JobService, LedgerService
from services.ledger.db import make_engine, migrate
from services.ledger.ledger import Ledger


@pytest.fixture(params=["postgresql", "sqlite"])
def unreachable_database(request, tmp_path):
    if request.param == "postgresql":
        return f"postgresql://avlora:secret@127.0.0.1:{free_port()}/ledger"
    (tmp_path / "gone").write_text("a file where the database directory should be")
    return f"sqlite:///{tmp_path / 'gone' / 'ledger.db'}"


async def _served(servicer, add) -> tuple[grpc.aio.Server, str]:
    server = grpc.aio.server()
    add(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, f"127.0.0.1:{port}"


def _no_sql(details: str, *names: str) -> None:
    for leak in ("INSERT", "SELECT", "sqlalchemy", "psycopg", "127.0.0.1", *names):
        assert leak.lower() not in details.lower(), details


async def test_a_database_outage_is_unavailable_and_shows_no_sql(unreachable_database, tmp_path):
    engine = make_engine(unreachable_database)
    server, address = await _served(JobService(Ledger(engine), None, JobChanges(None), LocalStore(tmp_path / "store")),
                                     jobs_pb2_grpc.add_JobServiceServicer_to_server)
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = jobs_pb2_grpc.JobServiceStub(channel)
            for call, request in ((stub.ListJobs, jobs_pb2.ListJobsRequest()),
                                  (stub.GetJob, jobs_pb2.GetJobRequest(job_id="j1"))):
                with pytest.raises(grpc.aio.AioRpcError) as error:
                    await call(request, metadata=[("authorization", "Bearer avl_key")], timeout=30)
                assert error.value.code() == grpc.StatusCode.UNAVAILABLE
                details = error.value.details()
                assert details == "the ledger's database is unavailable; retry later"
                _no_sql(details, "api_keys", "secret", "ledger.db")
    finally:
        await server.stop(None)
        await engine.dispose()


@pytest.fixture
def postgres_url(database_url):
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL only (DATABASE_URL): SQLite neither enforces lengths nor can be dropped under a pool")
    return database_url


async def test_a_database_gone_while_jobs_are_created_is_unavailable(postgres_url, tmp_path):
    """The key is verified (and cached) while the database is up; then the database is dropped, so
    the failure comes from CreateJob's group-committed insert itself."""
    import psycopg
    engine = make_engine(postgres_url)
    await migrate(engine)
    ledger = Ledger(engine)
    key = await ledger.add_api_key("acme")
    server, address = await _served(JobService(ledger, None, JobChanges(None), LocalStore(tmp_path / "store")),
                                     jobs_pb2_grpc.add_JobServiceServicer_to_server)
    metadata = [("authorization", f"Bearer {key}")]
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = jobs_pb2_grpc.JobServiceStub(channel)
            assert (await stub.ListJobs(jobs_pb2.ListJobsRequest(), metadata=metadata, timeout=30)).jobs == []
            base, name = postgres_url.rsplit("/", 1)
            with psycopg.connect(base + "/postgres", autocommit=True) as connection:
                connection.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            request = jobs_pb2.CreateJobRequest(params=params_pb2.JobParams(v2a=params_pb2.V2AParams(
                training_data_url="https://e.com/d.zip")))
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await stub.CreateJob(request, metadata=metadata, timeout=30)
            assert error.value.code() == grpc.StatusCode.UNAVAILABLE
            assert error.value.details() == "the ledger's database is unavailable; retry later"
            _no_sql(error.value.details(), name, "jobs")
    finally:
        await server.stop(None)
        await engine.dispose()


async def test_a_value_too_long_for_the_database_is_invalid_argument(postgres_url):
    engine = make_engine(postgres_url)
    await migrate(engine)
    ledger = Ledger(engine)
    await ledger.add_api_key("acme")
    server, address = await _served(LedgerService(ledger, admin_key=""),
                                     ledger_pb2_grpc.add_LedgerServiceServicer_to_server)
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as error:  # uploads.id is 64 characters at most
                await ledger_pb2_grpc.LedgerServiceStub(channel).RecordUpload(
                    ledger_pb2.RecordUploadRequest(upload_id="u" * 100, tenant="acme", size=1), timeout=30)
            assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert error.value.details() == ("a value does not fit the ledger's database (too long or out of "
                                             "range)")
            _no_sql(error.value.details(), "uploads", "varying")
    finally:
        await server.stop(None)
        await engine.dispose()
