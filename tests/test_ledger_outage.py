"""A ledger whose database is gone: a real gRPC server in front of a real SQLAlchemy engine pointed
at a PostgreSQL port nobody listens on, or at a SQLite file that cannot be opened. Callers get
UNAVAILABLE, never the SQL or the host."""

import grpc
import pytest

from avlora.stack import free_port
from avlora.store import LocalStore
from avlora.v1 import jobs_pb2, jobs_pb2_grpc
from services.ledger.api import JobChanges, JobService
from services.ledger.db import make_engine
from services.ledger.ledger import Ledger


@pytest.fixture(params=["postgresql", "sqlite"])
def unreachable_database(request, tmp_path):
    if request.param == "postgresql":
        return f"postgresql://avlora:secret@127.0.0.1:{free_port()}/ledger"
    (tmp_path / "gone").write_text("a file where the database directory should be")
    return f"sqlite:///{tmp_path / 'gone' / 'ledger.db'}"


async def test_a_database_outage_is_unavailable_and_shows_no_sql(unreachable_database, tmp_path):
    engine = make_engine(unreachable_database)
    server = grpc.aio.server()
    jobs_pb2_grpc.add_JobServiceServicer_to_server(JobService(Ledger(engine), None, JobChanges(None), LocalStore(tmp_path / "store")), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = jobs_pb2_grpc.JobServiceStub(channel)
            for call, request in ((stub.ListJobs, jobs_pb2.ListJobsRequest()),
                                  (stub.GetJob, jobs_pb2.GetJobRequest(job_id="j1"))):
                with pytest.raises(grpc.aio.AioRpcError) as error:
                    await call(request, metadata=[("authorization", "Bearer avl_key")], timeout=30)
                assert error.value.code() == grpc.StatusCode.UNAVAILABLE
                details = error.value.details()
                assert details == "the ledger's database is unavailable; retry later"
                for leak in ("SELECT", "api_keys", "127.0.0.1", "secret", "ledger.db", "sqlalchemy"):
                    assert leak not in details
    finally:
        await server.stop(None)
        await engine.dispose()
