"""gRPC adapters of the ledger: the public JobService and the internal LedgerService (served on
the internal port, behind the service credential: see avlora/service.py)."""

import asyncio
import functools
import hmac
import inspect
import re
from collections import defaultdict
from datetime import datetime, timedelta, timezone

import grpc
import structlog
from sqlalchemy.exc import DataError, IntegrityError, SQLAlchemyError

from avlora import bus, netguard
from avlora.auth import KeyCache, bearer_key
from avlora.job_state import TERMINAL
from avlora.params import MAX_URL_CHARS, MODES, InvalidParams, checked_url, to_proto
from avlora.service import valid_params
from avlora.store import ArtifactStore
from avlora.v1 import events_pb2, jobs_pb2, jobs_pb2_grpc, ledger_pb2, ledger_pb2_grpc
from services.ledger import downloads
from services.ledger.billing import Bill, total_cost
from services.ledger.history import job_history
from services.ledger.ledger import Ledger, RequestIdReused
from services.ledger.messages import job_message, params_message, timestamp
from services.ledger.models import Job
from services.ledger.webhooks import checked_webhook_url

WATCH_POLL_S = 2.0
MAX_REQUEST_ID_CHARS = 128
LIST_REPLY_BYTES = 1024 * 1024   # a ListJobs reply stops at about this size (next_page_token goes on)
TENANT_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
log = structlog.get_logger()


class JobChanges:
    """Wakes WatchJob streams when their job changed. Whichever ledger process changes a job
    announces it over core NATS (bus.CHANGED_SUBJECT), so a stream on any API replica wakes; a
    process with both roles hears its own announcements."""

    def __init__(self, nc):
        self.nc = nc
        self._events: dict[str, set[asyncio.Event]] = defaultdict(set)

    async def listen(self) -> None:
        async def received(message) -> None:
            self.notify(message.data.decode())
        await self.nc.subscribe(bus.CHANGED_SUBJECT, cb=received)

    async def announce(self, job_ids) -> None:
        for job_id in dict.fromkeys(job_ids):
            await self.nc.publish(bus.CHANGED_SUBJECT, job_id.encode())

    def notify(self, job_id: str) -> None:
        for waiter in self._events.get(job_id, ()):
            waiter.set()

    async def wait(self, job_id: str, timeout: float) -> None:
        waiter = asyncio.Event()
        self._events[job_id].add(waiter)
        try:
            await asyncio.wait_for(waiter.wait(), timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            self._events[job_id].discard(waiter)
            if not self._events[job_id]:
                del self._events[job_id]


async def _abort_for_database(context, error: Exception) -> None:
    """A database error as a status a caller can act on; the SQL and the host stay in our log."""
    log.error("database error", error=repr(error))
    if isinstance(error, DataError):
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "a value does not fit the ledger's database "
                            "(too long or out of range)")
    if isinstance(error, IntegrityError):
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "a value does not fit the ledger's database "
                            "(it names a record that does not exist, or repeats a unique one)")
    await context.abort(grpc.StatusCode.UNAVAILABLE, "the ledger's database is unavailable; retry later")


def database_errors_mapped(servicer_class):
    """Wraps every RPC of a servicer so that no database error reaches the caller as it is."""
    def wrap(method):
        if inspect.isasyncgenfunction(method):
            @functools.wraps(method)
            async def streaming(self, request, context):
                try:
                    async for item in method(self, request, context):
                        yield item
                except SQLAlchemyError as error:
                    await _abort_for_database(context, error)
            return streaming

        @functools.wraps(method)
        async def unary(self, request, context):
            try:
                return await method(self, request, context)
            except SQLAlchemyError as error:
                await _abort_for_database(context, error)
        return unary

    for name, method in list(vars(servicer_class).items()):
        if name[:1].isupper() and callable(method):
            setattr(servicer_class, name, wrap(method))
    return servicer_class


def list_item(job: Job, units: int) -> jobs_pb2.Job:
    """A job as ListJobs shows it: without its prompts (GetJob has them), so pages stay small."""
    message = job_message(job, units)
    mode = getattr(message.params, job.mode)
    mode.ClearField("validation_negative_prompt")
    for item in mode.validation:
        item.ClearField("prompt")
    return message


LIST_ITEMS_KEPT = 8192
_list_items: dict[tuple, bytes] = {}


def list_item_bytes(job: Job, units: int) -> bytes:
    """list_item serialized, kept while the job is unchanged: every change of a job moves its
    updated_at (and its bill, once, its units), so a page listed again reuses most of its items."""
    key = (job.id, job.updated_at, units)
    item = _list_items.get(key)
    if item is None:
        if len(_list_items) >= LIST_ITEMS_KEPT:
            del _list_items[next(iter(_list_items))]  # the oldest kept
        item = _list_items[key] = list_item(job, units).SerializeToString()
    return item


@database_errors_mapped
class JobService(jobs_pb2_grpc.JobServiceServicer):
    def __init__(self, ledger: Ledger, js, changes: JobChanges, store: ArtifactStore, url_ttl_s: int = 3600,
                 allowed_networks: list[netguard.Network] | None = None):
        self.ledger, self.js, self.changes = ledger, js, changes
        self.store, self.url_ttl_s = store, url_ttl_s  # outputs to download; presigned URLs' lifetime
        self.keys = KeyCache()
        # webhook URLs may name these non-public networks (AVLORA_INGEST_ALLOW_NETWORKS, as datasets)
        self.allowed_networks = netguard.AllowList.from_env().networks if allowed_networks is None \
            else allowed_networks
        self.queued: set[str] = set()  # jobs whose work item NATS accepted, still in the outbox (relay_work)

    async def _tenant(self, context) -> str:
        return await self.keys.tenant(context, self.ledger.tenant_for_key)

    async def _message(self, job: Job) -> jobs_pb2.Job:
        bill = await self.ledger.bill_of(job.id) if job.state in TERMINAL else None
        return downloads.add_download_urls(self.store, self.url_ttl_s, job_message(job, bill.units if bill else 0,
                                                       await self.ledger.queue_position(job)))

    async def _own_job(self, tenant: str, job_id: str, context) -> Job:
        job = await self.ledger.get_job(tenant, job_id)
        if job is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no job {job_id!r}")
        return job

    async def CreateJob(self, request, context):
        tenant = await self._tenant(context)
        params = await valid_params(request.params, context)
        if len(request.request_id) > MAX_REQUEST_ID_CHARS or not request.request_id.isprintable():
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"request_id: at most {MAX_REQUEST_ID_CHARS} printable characters")
        if request.webhook_url:
            await self._check_webhook_url(request.webhook_url, context)
        try:  # finished even if the caller goes away (the outbox would send it later, but now is better)
            job, created = await asyncio.shield(self._record_and_queue(tenant, params, request.request_id,
                                                                       request.webhook_url))
        except InvalidParams as error:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        except RequestIdReused as error:
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, str(error))
        return job_message(job) if created else await self._message(job)

    async def _check_webhook_url(self, url: str, context) -> None:
        """As a dataset URL is checked (length, control characters, scheme), and its host must
        resolve to public addresses only (or allowed networks) as ingest requires of a download."""
        try:
            if len(url) > MAX_URL_CHARS:
                raise ValueError(f"at most {MAX_URL_CHARS} characters")
            checked_url(url)
            await asyncio.to_thread(checked_webhook_url, url, self.allowed_networks)
        except ValueError as error:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"webhook_url: {error}")

    async def _record_and_queue(self, tenant: str, params, request_id: str, webhook_url: str) -> tuple[Job, bool]:
        """Records the job with its work item in the outbox, then offers the item to NATS: when NATS
        is down the job stays recorded and relay_work sends the item once NATS is back."""
        job, created = await self.ledger.create_job(tenant, params, request_id, webhook_url)
        if created or job.state == jobs_pb2.QUEUED:  # a retried create re-queues; JetStream de-duplicates
            try:
                await bus.publish_work(self.js, "ingest", events_pb2.StageWork(
                    job_id=job.id, tenant=tenant, params=to_proto(params)))
                self.queued.add(job.id)
            except Exception as error:
                log.warning("work item left in the outbox (NATS did not accept it)", job_id=job.id, error=repr(error))
        return job, created

    async def relay_work(self, stopping: asyncio.Event, interval_s: float = 1.0, grace_s: float = 5.0) -> None:
        """Until `stopping`: every `interval_s`, drops from the outbox the work items NATS accepted,
        and sends those left longer than `grace_s` (NATS was down, or the process that recorded
        the job died before sending): JetStream drops a duplicate of one already sent. A job that
        is no longer QUEUED (cancelled meanwhile) is not sent."""
        while not stopping.is_set():
            try:
                sent, self.queued = self.queued, set()
                await self.ledger.sent_to_queue(sent)
                cutoff = datetime.now(timezone.utc) - timedelta(seconds=grace_s)
                for item, job in await self.ledger.unsent_work(cutoff):
                    if job.state == jobs_pb2.QUEUED:
                        await bus.publish_work(self.js, item.stage, events_pb2.StageWork(
                            job_id=job.id, tenant=job.tenant_id, params=params_message(job.params_json)))
                        log.info("work item sent from the outbox", job_id=job.id, stage=item.stage)
                    self.queued.add(job.id)
            except Exception as error:  # NATS or the database still down: next round
                log.warning("work outbox not sent", error=repr(error))
            try:
                await asyncio.wait_for(stopping.wait(), interval_s)
            except asyncio.TimeoutError:
                pass

    async def GetJob(self, request, context):
        tenant = await self._tenant(context)
        return await self._message(await self._own_job(tenant, request.job_id, context))

    async def ListJobs(self, request, context):
        tenant = await self._tenant(context)
        if request.mode and request.mode not in MODES:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"mode: must be one of {', '.join(MODES)} or empty")
        try:
            rows, token = await self.ledger.list_jobs(tenant, state=request.state, mode=request.mode,
                                                      page_size=request.page_size, page_token=request.page_token)
        except ValueError as error:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        reply, size = jobs_pb2.ListJobsResponse(), 0
        for job in rows:
            item = list_item_bytes(job, job.units)
            size += len(item)
            if reply.jobs and size > LIST_REPLY_BYTES:  # the rest on the next page
                token = reply.jobs[-1].id
                break
            reply.jobs.add().MergeFromString(item)
        reply.next_page_token = token
        return reply

    async def CancelJob(self, request, context):
        tenant = await self._tenant(context)
        job = await self.ledger.cancel_job(tenant, request.job_id)
        if job is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no job {request.job_id!r}")
        if job.state == jobs_pb2.CANCELLED:
            await bus.mark_cancelled(self.js, job.id)
            await self.changes.announce([job.id])
        return await self._message(job)

    async def WatchJob(self, request, context):
        tenant = await self._tenant(context)
        last = None
        while True:
            message = await self._message(await self._own_job(tenant, request.job_id, context))
            if message != last:
                yield message
                last = message
            if message.state in TERMINAL:
                return
            await self.changes.wait(request.job_id, WATCH_POLL_S)

    DownloadArtifact = downloads.download_artifact

    async def GetJobHistory(self, request, context):
        tenant = await self._tenant(context)
        job = await self._own_job(tenant, request.job_id, context)
        history = job_history(job, await self.ledger.job_events(job.id))
        history.webhooks.extend(await self._webhook_deliveries(job.id))
        return history

    async def GetWebhookSecret(self, request, context):
        return jobs_pb2.WebhookSecret(secret=await self.ledger.webhook_secret(await self._tenant(context)))

    async def RotateWebhookSecret(self, request, context):
        tenant = await self._tenant(context)
        secret = await self.ledger.webhook_secret(tenant, rotate=True)
        log.info("webhook secret rotated", tenant=tenant)
        return jobs_pb2.WebhookSecret(secret=secret)

    async def ListWebhookDeliveries(self, request, context):
        tenant = await self._tenant(context)
        await self._own_job(tenant, request.job_id, context)
        return jobs_pb2.WebhookDeliveries(deliveries=await self._webhook_deliveries(request.job_id))

    async def _webhook_deliveries(self, job_id: str) -> list[jobs_pb2.WebhookDelivery]:
        found = []
        for delivery, attempts in await self.ledger.webhook_deliveries(job_id):
            item = jobs_pb2.WebhookDelivery(message_id=delivery.message_id, type=delivery.type, state=delivery.state,
                                            url=delivery.url, status=delivery.status,
                                            created_at=timestamp(delivery.created_at))
            if delivery.next_attempt_at:
                item.next_attempt_at.CopyFrom(timestamp(delivery.next_attempt_at))
            for attempt in attempts:
                item.attempts.add(at=timestamp(attempt.at), status_code=attempt.status_code, error=attempt.error)
            found.append(item)
        return found

    async def GetUsage(self, request, context):
        tenant = await self._tenant(context)
        if request.job_id:
            await self._own_job(tenant, request.job_id, context)
        bills = [(usage, state, Bill(usage.units, usage.unit_price))
                 for usage, state in await self.ledger.usage(tenant, request.job_id)]
        lines = [jobs_pb2.UsageLine(job_id=usage.job_id, mode=usage.mode, state=state, units=bill.units,
                                    unit_price=bill.unit_price, cost=bill.cost) for usage, state, bill in bills]
        return jobs_pb2.Usage(tenant=tenant, lines=lines, total_units=sum(line.units for line in lines),
                              total_cost=total_cost(bill for _, _, bill in bills))


@database_errors_mapped
class LedgerService(ledger_pb2_grpc.LedgerServiceServicer):
    """Internal RPCs (the service credential is checked before these run). CreateApiKey also needs
    `authorization: Bearer <AVLORA_ADMIN_KEY>`."""

    def __init__(self, ledger: Ledger, admin_key: str):
        self.ledger, self.admin_key = ledger, admin_key

    async def ListJobEvents(self, request, context):
        rows = await self.ledger.job_events(request.job_id)
        return ledger_pb2.ListJobEventsResponse(events=[
            ledger_pb2.AppliedEvent(event=events_pb2.JobEvent.FromString(row.payload), applied=row.applied,
                                    note=row.note) for row in rows])

    async def Authenticate(self, request, context):
        tenant = await self.ledger.tenant_for_key(request.api_key)
        if tenant is None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "unknown API key")
        return ledger_pb2.AuthenticateResponse(tenant=tenant)

    async def CreateApiKey(self, request, context):
        if not self.admin_key or not hmac.compare_digest(bearer_key(context).encode(), self.admin_key.encode()):
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "CreateApiKey needs the admin key")
        if not TENANT_NAME.fullmatch(request.tenant):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "tenant: 1 to 64 characters of a-z, 0-9, '.', "
                                "'_' and '-', starting with a letter or a digit")
        key = await self.ledger.add_api_key(request.tenant)
        return ledger_pb2.CreateApiKeyResponse(tenant=request.tenant, api_key=key)

    async def RecordUpload(self, request, context):
        if not request.tenant or not request.upload_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "upload_id and tenant are required")
        await self.ledger.record_upload(request.upload_id, request.tenant, request.size)
        return ledger_pb2.RecordUploadResponse()

    async def CheckUploads(self, request, context):
        not_owned = await self.ledger.uploads_not_owned(request.tenant, set(request.upload_ids))
        return ledger_pb2.CheckUploadsResponse(not_owned=sorted(not_owned))
