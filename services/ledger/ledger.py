"""The ledger: the system of record for jobs, events and bills. All SQL lives here."""

import hashlib
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from avlora.params import JobParams, from_json
from avlora.v1 import events_pb2, jobs_pb2
from services.ledger import billing, states
from services.ledger.db import sessions
from services.ledger.models import ApiKey, Job, JobEvent, Tenant, Usage, utcnow

MAX_PAGE = 500
log = structlog.get_logger()


def hash_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def new_api_key() -> str:
    return "avl_" + secrets.token_urlsafe(32)


def merge_progress(stored: bytes, incoming: jobs_pb2.Progress) -> jobs_pb2.Progress:
    """A progress line without counts (a log message) keeps the counts and losses already known."""
    if incoming.total or not stored:
        return incoming
    merged = jobs_pb2.Progress.FromString(stored)
    if merged.stage != incoming.stage:
        return incoming
    merged.message = incoming.message
    return merged


@dataclass
class Applied:
    job_id: str
    applied: bool
    note: str


class Ledger:
    def __init__(self, engine: AsyncEngine):
        self.engine = engine
        self.session = sessions(engine)
        # Called with a job once it reached a terminal state (after the commit); e.g. retention.
        self.on_job_end: list[Callable[[Job], Awaitable[None]]] = []

    async def _ended(self, job_id: str) -> None:
        job = await self.get_job(None, job_id)
        for callback in self.on_job_end:
            try:
                await callback(job)
            except Exception as error:  # never undoes the transition; `avlora gc` catches up
                log.error("job-end callback failed", job_id=job_id, error=repr(error))

    def _insert(self, table):
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        return dialect.insert(table)

    # --- tenants and keys -------------------------------------------------------------------
    async def add_api_key(self, tenant: str, api_key: str | None = None) -> str:
        """Stores the hash of a key for a tenant (created if new); returns the key."""
        api_key = api_key or new_api_key()
        async with self.session.begin() as session:
            await session.execute(self._insert(Tenant).values(id=tenant, created_at=utcnow())
                                  .on_conflict_do_nothing(index_elements=["id"]))
            await session.execute(self._insert(ApiKey).values(
                key_hash=hash_key(api_key), tenant_id=tenant, created_at=utcnow())
                .on_conflict_do_nothing(index_elements=["key_hash"]))
        return api_key

    async def tenant_for_key(self, api_key: str) -> str | None:
        async with self.session() as session:
            return await session.scalar(sa.select(ApiKey.tenant_id).where(ApiKey.key_hash == hash_key(api_key)))

    # --- jobs -------------------------------------------------------------------------------
    async def create_job(self, tenant: str, params: JobParams, request_id: str) -> tuple[Job, bool]:
        """Inserts a QUEUED job; a repeated request_id returns the first job and False."""
        job_id = uuid.uuid4().hex
        now = utcnow()
        async with self.session.begin() as session:
            inserted = await session.scalar(
                self._insert(Job).values(
                    id=job_id, tenant_id=tenant, mode=params.mode, state=jobs_pb2.QUEUED,
                    params_json=params.model_dump_json(), request_id=request_id or None,
                    progress=b"", outputs=b"", error="", created_at=now, updated_at=now)
                .on_conflict_do_nothing().returning(Job.id))
        if inserted is None:
            async with self.session() as session:
                job = await session.scalar(sa.select(Job).where(
                    Job.tenant_id == tenant, Job.request_id == request_id))
            return job, False
        return await self.get_job(tenant, job_id), True

    async def delete_queued_job(self, job_id: str) -> None:
        """Removes a job that could not be queued (no worker ever saw it, nothing was billed)."""
        async with self.session.begin() as session:
            await session.execute(sa.delete(Job).where(Job.id == job_id, Job.state == jobs_pb2.QUEUED))

    async def get_job(self, tenant: str | None, job_id: str) -> Job | None:
        """A job, only if it belongs to the tenant (None: any tenant, for internal callers)."""
        query = sa.select(Job).where(Job.id == job_id)
        if tenant is not None:
            query = query.where(Job.tenant_id == tenant)
        async with self.session() as session:
            return await session.scalar(query)

    async def list_jobs(self, tenant: str, *, state: int = 0, mode: str = "", page_size: int = 50,
                        page_token: str = "") -> tuple[list[Job], str]:
        page_size = min(max(page_size or 50, 1), MAX_PAGE)
        query = sa.select(Job).where(Job.tenant_id == tenant)
        if state:
            query = query.where(Job.state == state)
        if mode:
            query = query.where(Job.mode == mode)
        async with self.session() as session:
            if page_token:
                last = await session.get(Job, page_token)
                if last is None or last.tenant_id != tenant:
                    raise ValueError("page_token: not a token from this listing")
                query = query.where(sa.tuple_(Job.created_at, Job.id) < (last.created_at, last.id))
            rows = list(await session.scalars(
                query.order_by(Job.created_at.desc(), Job.id.desc()).limit(page_size + 1)))
        more = len(rows) > page_size
        rows = rows[:page_size]
        return rows, (rows[-1].id if more else "")

    async def cancel_job(self, tenant: str, job_id: str) -> Job | None:
        """Cancels a job that has not finished (idempotent); a finished job is left as it is."""
        event = events_pb2.JobEvent(event_id=f"{job_id}:cancel-request", job_id=job_id,
                                    cancelled=events_pb2.StageCancelled(stage="api"))
        async with self.session.begin() as session:
            job = await session.scalar(sa.select(Job).where(Job.id == job_id, Job.tenant_id == tenant)
                                       .with_for_update())
            if job is None:
                return None
            ended = job.state not in states.TERMINAL
            if ended:
                await self._record(session, event, True, "cancelled through the API")
                await self._finish(session, job, jobs_pb2.CANCELLED)
        if ended:
            await self._ended(job_id)
        return await self.get_job(tenant, job_id)

    # --- events -----------------------------------------------------------------------------
    async def apply_event(self, event: events_pb2.JobEvent) -> Applied:
        """Applies an event at most once (its event_id is the key): a duplicate changes nothing."""
        async with self.session.begin() as session:
            seq = await self._record(session, event, False, "")
            if seq is None:
                return Applied(event.job_id, False, "duplicate")
            job = await session.scalar(sa.select(Job).where(Job.id == event.job_id).with_for_update())
            ended = False
            if job is None:
                note, applied = "unknown job", False
            else:
                new_state, note = states.decide(job.state, event)
                applied = new_state is not None
                if applied:
                    self._apply(job, new_state, event)
                    if new_state in states.TERMINAL:
                        await self._finish(session, job, new_state)
                        ended = True
            await session.execute(sa.update(JobEvent).where(JobEvent.seq == seq).values(applied=applied, note=note))
        if ended:
            await self._ended(event.job_id)
        return Applied(event.job_id, applied, note)

    def _apply(self, job: Job, new_state: int, event: events_pb2.JobEvent) -> None:
        kind = event.WhichOneof("kind")
        job.state = new_state
        job.updated_at = utcnow()
        if kind == "progress":
            job.progress = merge_progress(job.progress, event.progress).SerializeToString()
        elif kind == "failed":
            job.error = event.failed.reason
        elif kind == "succeeded":
            job.outputs = event.succeeded.outputs.SerializeToString()
            done = jobs_pb2.Progress.FromString(job.progress) if job.progress else jobs_pb2.Progress()
            done.stage, done.done, done.total, done.unit = "train", event.succeeded.steps_completed, event.succeeded.steps_completed, "steps"
            done.eta_seconds, done.message = 0, "done"
            job.progress = done.SerializeToString()

    async def _record(self, session, event: events_pb2.JobEvent, applied: bool, note: str) -> int | None:
        return await session.scalar(
            self._insert(JobEvent).values(event_id=event.event_id, job_id=event.job_id,
                                          payload=event.SerializeToString(), applied=applied, note=note,
                                          received_at=utcnow())
            .on_conflict_do_nothing(index_elements=["event_id"]).returning(JobEvent.seq))

    async def _finish(self, session, job: Job, final_state: int) -> None:
        """Moves a job to a terminal state and bills it, at most once."""
        job.state, job.updated_at = final_state, utcnow()
        bill = billing.bill_for(job.mode, final_state, from_json(job.params_json).number_of_steps)
        await session.execute(self._insert(Usage).values(
            job_id=job.id, tenant_id=job.tenant_id, mode=job.mode, units=bill.units,
            unit_price=bill.unit_price, billed_at=utcnow()).on_conflict_do_nothing(index_elements=["job_id"]))

    async def job_events(self, job_id: str) -> list[JobEvent]:
        async with self.session() as session:
            return list(await session.scalars(sa.select(JobEvent).where(JobEvent.job_id == job_id)
                                              .order_by(JobEvent.seq)))

    # --- retention --------------------------------------------------------------------------
    async def all_jobs(self, active_only: bool = False) -> list[Job]:
        """Every job (or every job not ended yet), for retention."""
        query = sa.select(Job)
        if active_only:
            query = query.where(Job.state.not_in(states.TERMINAL))
        async with self.session() as session:
            return list(await session.scalars(query))

    # --- usage ------------------------------------------------------------------------------
    async def usage(self, tenant: str, job_id: str = "") -> list[tuple[Usage, int]]:
        """Bills of a tenant's finished jobs (with each job's final state), optionally one job."""
        query = (sa.select(Usage, Job.state).join(Job, Job.id == Usage.job_id)
                 .where(Usage.tenant_id == tenant).order_by(Usage.billed_at))
        if job_id:
            query = query.where(Usage.job_id == job_id)
        async with self.session() as session:
            return [(row[0], row[1]) for row in (await session.execute(query)).all()]

    async def bill_of(self, job_id: str) -> Usage | None:
        async with self.session() as session:
            return await session.get(Usage, job_id)
