"""The ledger split in two processes (AVLORA_LEDGER_ROLE): the API, which can run as many replicas,
and the one event consumer; changes reach every API process's WatchJob streams over NATS."""

import asyncio
import subprocess
import sys
import time
from http.server import HTTPServer, SimpleHTTPRequestHandler
from pathlib import Path
from threading import Thread

import grpc
import nats
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from avlora.stack import LEDGER_EVENTS
from avlora.v1 import jobs_pb2, jobs_pb2_grpc, params_pb2
from services.ledger.api import JobChanges
from services.ledger.db import make_engine
from services.ledger.models import Base

ROOT = Path(__file__).resolve().parent.parent


def test_the_api_and_the_event_consumer_run_as_separate_processes(make_stack, tmp_path):
    stack = make_stack(services=("ledger", LEDGER_EVENTS, "ingest"), extra_env={"AVLORA_INGEST_RETRIES": "1"})
    server = HTTPServer(("127.0.0.1", 0), SimpleHTTPRequestHandler)
    Thread(target=server.serve_forever, daemon=True).start()
    missing = f"http://127.0.0.1:{server.server_port}/nowhere/data.zip"
    key = [("authorization", f"Bearer {stack.info['api_key']}")]
    try:
        with grpc.insecure_channel(stack.info["ledger_addr"]) as channel:
            jobs = jobs_pb2_grpc.JobServiceStub(channel)
            job = jobs.CreateJob(jobs_pb2.CreateJobRequest(params=params_pb2.JobParams(
                v2a=params_pb2.V2AParams(training_data_url=missing))), metadata=key, timeout=30)
            seen = [update.state for update in jobs.WatchJob(jobs_pb2.GetJobRequest(job_id=job.id),
                                                             metadata=key, timeout=120)]
            usage = jobs.GetUsage(jobs_pb2.GetUsageRequest(job_id=job.id), metadata=key, timeout=30)
    finally:
        server.shutdown()
    assert seen[0] == jobs_pb2.QUEUED and seen[-1] == jobs_pb2.FAILED, seen
    assert [(line.state, line.units) for line in usage.lines] == [(jobs_pb2.FAILED, 0)]
    logs = Path(stack.info["logs"])
    applied = [line for line in (logs / f"{LEDGER_EVENTS}.log").read_text().splitlines() if "job state" in line]
    assert len(applied) == 2 and all(job.id in line for line in applied)  # INGESTING, FAILED: by the consumer
    created = [line for line in (logs / "ledger.log").read_text().splitlines() if "job state" in line]
    assert len(created) == 1 and '"state": "QUEUED"' in created[0]  # the API process created it, applied nothing


async def test_a_change_announced_by_one_ledger_process_wakes_the_watchers_of_another(nats_url):
    announcer, listener = await nats.connect(nats_url), await nats.connect(nats_url)
    heard = JobChanges(listener)
    await heard.listen()
    waiting = asyncio.create_task(heard.wait("job-1", timeout=60))
    other = asyncio.create_task(heard.wait("job-2", timeout=60))
    await asyncio.sleep(0.1)
    started = time.monotonic()
    await JobChanges(announcer).announce(["job-1", "job-1"])
    await asyncio.wait_for(waiting, 10)  # woken by the announcement, not by its 60 s timeout
    assert time.monotonic() - started < 10 and not other.done()
    other.cancel()
    await announcer.close()
    await listener.close()


def test_ledger_processes_starting_together_migrate_the_database_once(database_url):
    """API replicas and the event consumer start at once: each migrates, in turn."""
    migrate = ("import asyncio, sys; from services.ledger.db import make_engine, migrate; "
               "asyncio.run(migrate(make_engine(sys.argv[1])))")
    processes = [subprocess.Popen([sys.executable, "-c", migrate, database_url], cwd=ROOT, stderr=subprocess.PIPE,
                                  text=True) for _ in range(3)]
    for process in processes:
        assert process.wait(timeout=120) == 0, process.stderr.read()

    async def differences():
        engine = make_engine(database_url)
        async with engine.connect() as connection:
            diff = await connection.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync), Base.metadata))
        await engine.dispose()
        return diff
    assert asyncio.run(differences()) == []
