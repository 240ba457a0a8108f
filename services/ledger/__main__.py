"""`python -m services.ledger`: the public JobService (AVLORA_GRPC_PORT), the internal
LedgerService (AVLORA_INTERNAL_PORT, default 50052, behind AVLORA_INTERNAL_TOKEN) and the event
consumers. AVLORA_DATABASE_URL (default: SQLite in the data dir); AVLORA_LEDGER_KEYS="tenant:key,..."
registers keys at start-up; AVLORA_ADMIN_KEY enables CreateApiKey."""

import asyncio

from avlora import bus
from avlora.service import configure_logging, serve
from avlora.retention import job_end_callback
from avlora.settings import Settings
from avlora.store import open_store
from avlora.v1 import jobs_pb2_grpc, ledger_pb2_grpc
from services.ledger.api import JobChanges, JobService, LedgerService
from services.ledger.consumer import apply_events, ensure_advisory_stream, fail_exhausted_work
from services.ledger.db import make_engine, migrate
from services.ledger.ledger import Ledger


async def main() -> None:
    settings = Settings.from_env()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.ledger_database_url)
    await migrate(engine)
    ledger = Ledger(engine)
    store = open_store(settings.store_url)
    ledger.on_job_end.append(job_end_callback(ledger, store))
    for entry in filter(None, settings.ledger_keys.split(",")):
        tenant, _, key = entry.partition(":")
        await ledger.add_api_key(tenant, key)
    nc = await bus.connect(settings.nats_url, f"ledger-{settings.worker_name}")
    js = nc.jetstream()
    await bus.ensure_spine(js, ack_wait=settings.ack_wait_s, max_deliver=settings.max_deliver)
    await ensure_advisory_stream(js)
    changes = JobChanges()
    stopping = asyncio.Event()
    registrations = [
        (jobs_pb2_grpc.add_JobServiceServicer_to_server, JobService(ledger, js, changes, store, settings.download_url_ttl_s), "avlora.v1.JobService"),
        (ledger_pb2_grpc.add_LedgerServiceServicer_to_server,
         LedgerService(ledger, settings.admin_key), "avlora.v1.LedgerService"),
    ]
    try:
        await serve("ledger", settings, registrations, internal_port=settings.internal_port, on_stop=stopping.set,
                    background=[lambda: apply_events(js, ledger, changes, stopping),
                                lambda: fail_exhausted_work(js, ledger, changes, stopping)])
    finally:
        await bus.close(nc)
        await engine.dispose()


if __name__ == "__main__":
    configure_logging()
    asyncio.run(main())
