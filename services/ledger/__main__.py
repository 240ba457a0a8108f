"""`python -m services.ledger`: by AVLORA_LEDGER_ROLE,
- api: the public JobService (AVLORA_GRPC_PORT) and the internal LedgerService (AVLORA_INTERNAL_PORT,
  default 50052, behind AVLORA_INTERNAL_TOKEN), and the relay of the work outbox; stateless, so
  any number of replicas;
- events: the event consumer (applies the job events in order, fails the jobs of exhausted work,
  delivers webhooks, sweeps the store by the retention rules); exactly one, serving only gRPC
  health on AVLORA_GRPC_PORT;
- all (default): both in one process.
AVLORA_DATABASE_URL (default: SQLite in the data dir); AVLORA_LEDGER_KEYS="tenant:key,..." registers
keys at start-up; AVLORA_ADMIN_KEY enables CreateApiKey."""

import asyncio

from avlora import bus, metrics, netguard
from avlora.logs import configure_logging
from avlora.service import serve
from avlora.settings import LEDGER_ROLES, Settings
from avlora.stores import open_store
from avlora.v1 import jobs_pb2_grpc, ledger_pb2_grpc
from services.ledger import retention
from services.ledger.api import JobChanges, JobService, LedgerService
from services.ledger.consumer import apply_events, ensure_advisory_stream, fail_exhausted_work
from services.ledger.db import make_engine, migrate
from services.ledger.ledger import Ledger
from services.ledger.webhooks import WebhookOptions, deliver_webhooks


async def backlog(js, ledger: Ledger) -> tuple[dict, dict]:
    """What the backlog metrics show: jobs not ended by state, and each stage's queue."""
    return await ledger.jobs_not_ended(), await bus.queue_depths(js)


async def main() -> None:
    settings = Settings.from_env()
    if settings.ledger_role not in LEDGER_ROLES:
        raise SystemExit(f"AVLORA_LEDGER_ROLE: must be one of {', '.join(LEDGER_ROLES)}, "
                         f"not {settings.ledger_role!r}")
    api, events = settings.ledger_role in ("all", "api"), settings.ledger_role in ("all", "events")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.ledger_database_url)
    metrics.watch_database(engine.sync_engine)
    await migrate(engine)
    ledger = Ledger(engine)
    store = open_store(settings.store_url)
    ledger.on_job_end.append(retention.job_end_callback(ledger, store))
    for entry in filter(None, settings.ledger_keys.split(",") if api else ()):  # keys are the API's
        tenant, _, key = entry.partition(":")
        await ledger.add_api_key(tenant, key)
    nc = await bus.connect(settings.nats_url, f"ledger-{settings.worker_name}")
    js = nc.jetstream()
    await bus.ensure_spine(js, ack_wait=settings.ack_wait_s, max_deliver=settings.max_deliver)
    await ensure_advisory_stream(js)
    changes = JobChanges(nc)
    stopping = asyncio.Event()
    registrations, background = [], []
    if api:
        await changes.listen()
        jobs = JobService(ledger, js, changes, store, settings.download_url_ttl_s)
        background.append(lambda: jobs.relay_work(stopping))
        registrations = [
            (jobs_pb2_grpc.add_JobServiceServicer_to_server, jobs, "avlora.v1.JobService"),
            (ledger_pb2_grpc.add_LedgerServiceServicer_to_server,
             LedgerService(ledger, settings.admin_key), "avlora.v1.LedgerService")]
    if events:
        webhooks, allowed = WebhookOptions.from_env(), netguard.AllowList.from_env().networks
        background += [lambda: apply_events(js, ledger, changes, stopping),
                       lambda: fail_exhausted_work(js, ledger, changes, stopping),
                       lambda: deliver_webhooks(ledger, webhooks, stopping, allowed),
                       lambda: metrics.watch_backlog(lambda: backlog(js, ledger), stopping)]
        if settings.retention_sweep_hours > 0:
            background.append(lambda: retention.sweep(ledger, store, settings.retention_days,
                                                      settings.retention_sweep_hours * 3600, stopping))
    try:
        await serve("ledger" if api else "ledger-events", settings, registrations, on_stop=stopping.set,
                    internal_port=settings.internal_port if api else None, background=background)
    finally:
        await bus.close(nc)
        await engine.dispose()


if __name__ == "__main__":
    configure_logging()
    asyncio.run(main())
