"""gRPC adapters of the ledger: the public JobService and the internal LedgerService."""

import asyncio
import hmac
from collections import defaultdict

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from avlora import bus
from avlora.auth import bearer_key
from avlora.params import UNIT_PRICE, InvalidParams, from_json, from_proto, to_proto
from avlora.v1 import events_pb2, jobs_pb2, jobs_pb2_grpc, stages_pb2, stages_pb2_grpc
from services.ledger import downloads, states
from services.ledger.ledger import Ledger
from services.ledger.models import Job

WATCH_POLL_S = 2.0


class JobChanges:
    """Wakes WatchJob streams when the ledger applies an event to their job."""

    def __init__(self):
        self._events: dict[str, set[asyncio.Event]] = defaultdict(set)

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


def _timestamp(value) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def job_message(job: Job, units: int = 0) -> jobs_pb2.Job:
    params = from_json(job.params_json)
    price = UNIT_PRICE[job.mode]
    return jobs_pb2.Job(
        id=job.id, mode=job.mode, state=job.state, params=to_proto(params), request_id=job.request_id or "",
        created_at=_timestamp(job.created_at), updated_at=_timestamp(job.updated_at),
        progress=jobs_pb2.Progress.FromString(job.progress or b""), error=job.error,
        outputs=jobs_pb2.Outputs.FromString(job.outputs or b""),
        billed_units=units, unit_price=price, cost=round(units * price, 6))


class JobService(jobs_pb2_grpc.JobServiceServicer):
    def __init__(self, ledger: Ledger, js, changes: JobChanges):
        self.ledger, self.js, self.changes = ledger, js, changes

    async def _tenant(self, context) -> str:
        key = bearer_key(context)
        if not key:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing 'authorization: Bearer <key>'")
        tenant = await self.ledger.tenant_for_key(key)
        if tenant is None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "unknown API key")
        return tenant

    async def _message(self, job: Job) -> jobs_pb2.Job:
        bill = await self.ledger.bill_of(job.id)
        return downloads.add_download_urls(job_message(job, bill.units if bill else 0))

    async def _own_job(self, tenant: str, job_id: str, context) -> Job:
        job = await self.ledger.get_job(tenant, job_id)
        if job is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no job {job_id!r}")
        return job

    async def CreateJob(self, request, context):
        tenant = await self._tenant(context)
        try:
            params = from_proto(request.params)
        except InvalidParams as error:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        job, created = await self.ledger.create_job(tenant, params, request.request_id)
        if created or job.state == jobs_pb2.QUEUED:  # a retried create re-queues; JetStream de-duplicates
            try:
                await bus.publish_work(self.js, "ingest", events_pb2.StageWork(
                    job_id=job.id, tenant=tenant, params=to_proto(params)))
            except Exception as error:
                if created:  # never leave a job that no worker will see
                    await self.ledger.delete_queued_job(job.id)
                await context.abort(grpc.StatusCode.UNAVAILABLE,
                                    f"the job queue is unavailable ({error!r}); nothing was recorded, retry")
        return await self._message(job)

    async def GetJob(self, request, context):
        tenant = await self._tenant(context)
        return await self._message(await self._own_job(tenant, request.job_id, context))

    async def ListJobs(self, request, context):
        tenant = await self._tenant(context)
        if request.mode not in ("", "v2a", "av2av"):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "mode: must be v2a, av2av or empty")
        try:
            jobs, token = await self.ledger.list_jobs(tenant, state=request.state, mode=request.mode,
                                                      page_size=request.page_size, page_token=request.page_token)
        except ValueError as error:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        return jobs_pb2.ListJobsResponse(jobs=[await self._message(job) for job in jobs], next_page_token=token)

    async def CancelJob(self, request, context):
        tenant = await self._tenant(context)
        job = await self.ledger.cancel_job(tenant, request.job_id)
        if job is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no job {request.job_id!r}")
        if job.state == jobs_pb2.CANCELLED:
            await bus.mark_cancelled(self.js, job.id)
            self.changes.notify(job.id)
        return await self._message(job)

    async def WatchJob(self, request, context):
        tenant = await self._tenant(context)
        last = None
        while True:
            message = await self._message(await self._own_job(tenant, request.job_id, context))
            if message != last:
                yield message
                last = message
            if message.state in states.TERMINAL:
                return
            await self.changes.wait(request.job_id, WATCH_POLL_S)

    DownloadArtifact = downloads.download_artifact

    async def GetUsage(self, request, context):
        tenant = await self._tenant(context)
        if request.job_id:
            await self._own_job(tenant, request.job_id, context)
        lines = [jobs_pb2.UsageLine(job_id=usage.job_id, mode=usage.mode, state=state, units=usage.units,
                                    unit_price=usage.unit_price, cost=round(usage.units * usage.unit_price, 6))
                 for usage, state in await self.ledger.usage(tenant, request.job_id)]
        return jobs_pb2.Usage(tenant=tenant, lines=lines, total_units=sum(line.units for line in lines),
                              total_cost=round(sum(line.cost for line in lines), 6))


class LedgerService(stages_pb2_grpc.LedgerServiceServicer):
    """Internal RPCs. CreateApiKey needs `authorization: Bearer <AVLORA_ADMIN_KEY>`."""

    def __init__(self, ledger: Ledger, admin_key: str):
        self.ledger, self.admin_key = ledger, admin_key

    async def ListJobEvents(self, request, context):
        rows = await self.ledger.job_events(request.job_id)
        return stages_pb2.ListJobEventsResponse(events=[
            stages_pb2.AppliedEvent(event=events_pb2.JobEvent.FromString(row.payload), applied=row.applied,
                                    note=row.note) for row in rows])

    async def Authenticate(self, request, context):
        tenant = await self.ledger.tenant_for_key(request.api_key)
        if tenant is None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "unknown API key")
        return stages_pb2.AuthenticateResponse(tenant=tenant)

    async def CreateApiKey(self, request, context):
        if not self.admin_key or not hmac.compare_digest(bearer_key(context), self.admin_key):
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "CreateApiKey needs the admin key")
        if not request.tenant.strip():
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "tenant: required")
        key = await self.ledger.add_api_key(request.tenant.strip())
        return stages_pb2.CreateApiKeyResponse(tenant=request.tenant.strip(), api_key=key)
