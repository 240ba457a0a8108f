"""The ledger: the system of record for jobs, events and bills. All SQL lives here."""

import asyncio
import base64
import contextlib
import hashlib
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timezone

import sqlalchemy as sa
import structlog
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from avlora import metrics
from avlora.job_state import TERMINAL, state_name
from avlora.params import InvalidParams, JobParams, foreign_upload, from_json, upload_refs
from avlora.store import UPLOAD_SCHEME
from avlora.v1 import events_pb2, jobs_pb2
from services.ledger import billing, states
from services.ledger.db import sessions
from services.ledger.group_commit import GroupCommit, each_alone_if_refused
from services.ledger.messages import webhook_body, webhook_type
from services.ledger.models import (ApiKey, Job, JobEvent, Tenant, Upload, Usage, WebhookAttempt, WebhookDelivery,
                                    WorkOutbox, utcnow)

MAX_PAGE = 500
NOT_ENDED = (jobs_pb2.QUEUED, jobs_pb2.INGESTING, jobs_pb2.PREPROCESSING, jobs_pb2.TRAINING)
UPLOADS_PER_QUERY = 100  # uploads looked for in one query (each one a LIKE on the parameters)
log = structlog.get_logger()


def _naming(upload_ids) -> sa.ColumnElement[bool]:
    """Jobs whose parameters mention one of `upload_ids` (a text search: the callers read the
    parameters of what it finds)."""
    return sa.or_(*(Job.params_json.contains(f'"{UPLOAD_SCHEME}{upload_id}"', autoescape=True)
                    for upload_id in upload_ids))


class RequestIdReused(Exception):
    """A request_id already used by this tenant for a job with other parameters."""


def hash_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def new_api_key() -> str:
    return "avl_" + secrets.token_urlsafe(32)


def new_webhook_secret() -> str:
    """A Standard Webhooks secret: "whsec_" and the base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def webhook_row(job: Job) -> dict:
    """The webhook message announcing the job's current state (its id is stable: one per job and
    state, so a repeated transaction cannot make a second one)."""
    units = billing.bill_for(job.mode, job.state, from_json(job.params_json).number_of_steps).units \
        if job.state in TERMINAL else 0
    now = utcnow()
    return dict(message_id=f"msg_{job.id}_{state_name(job.state).lower()}", job_id=job.id, tenant_id=job.tenant_id,
                url=job.webhook_url, type=webhook_type(job.state), state=job.state,
                payload=webhook_body(job, units), status="pending", attempts=0, created_at=now,
                next_attempt_at=now)


LOSS_FIELDS = ("loss", "audio_loss", "video_loss", "validation_loss", "baseline_validation_loss",
               "validation_loss_on")


def merge_progress(stored: bytes, incoming: jobs_pb2.Progress) -> jobs_pb2.Progress:
    """A report without counts (a log line) keeps the counts already known; within a stage, the
    losses known so far stay until reported again (a preview's sampling steps report none)."""
    if not stored:
        return incoming
    previous = jobs_pb2.Progress.FromString(stored)
    if previous.stage != incoming.stage:
        return incoming
    merged = jobs_pb2.Progress()
    merged.CopyFrom(incoming if incoming.total else previous)
    merged.message = incoming.message
    for name in LOSS_FIELDS:
        if not getattr(merged, name):
            setattr(merged, name, getattr(previous, name))
    return merged


def event_stage(event: events_pb2.JobEvent) -> str:
    """The stage an event comes from (a job succeeds in its last stage, train)."""
    kind = event.WhichOneof("kind")
    return "train" if kind == "succeeded" else getattr(event, kind).stage


# A job to insert: its row, and the upload:// references of its parameters (field: upload id).
NewJob = tuple[dict, dict[str, str]]


@dataclass
class Applied:
    job_id: str
    applied: bool
    note: str
    tenant: str = ""  # the job's, when it exists (for the log)


class Ledger:
    def __init__(self, engine: AsyncEngine):
        self.engine = engine
        self.session = sessions(engine)
        # SQLite takes one writer at a time: queueing writers here is fairer and much faster than
        # letting them sleep in SQLite's busy handler (seconds of p99 at 32 clients).
        self._write_lock = asyncio.Lock() if engine.dialect.name == "sqlite" else contextlib.nullcontext()
        self._insert_job = self._insert(Job.__table__).on_conflict_do_nothing().returning(Job.__table__.c.id)
        self._new_jobs = GroupCommit(lambda batch: each_alone_if_refused(self._insert_jobs, batch))
        # Called with a job once it reached a terminal state (after the commit); e.g. retention.
        self.on_job_end: list[Callable[[Job], Awaitable[None]]] = []

    @contextlib.asynccontextmanager
    async def _writing(self):
        """A write transaction (committed at the end of the block)."""
        async with self._write_lock, self.session.begin() as session:
            yield session

    async def _ended(self, job: Job) -> None:
        bill = billing.bill_for(job.mode, job.state, from_json(job.params_json).number_of_steps)
        metrics.job_ended(job.mode, state_name(job.state), bill.units)
        for callback in self.on_job_end:
            try:
                await callback(job)
            except Exception as error:  # never undoes the transition; `avlora gc` catches up
                log.error("job-end callback failed", job_id=job.id, tenant=job.tenant_id, stage="retention",
                          error=repr(error))

    def _insert(self, table):
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        return dialect.insert(table)

    # --- tenants and keys -------------------------------------------------------------------
    async def add_api_key(self, tenant: str, api_key: str | None = None) -> str:
        """Stores the hash of a key for a tenant (created if new); returns the key."""
        api_key = api_key or new_api_key()
        async with self._writing() as session:
            await session.execute(self._insert(Tenant).values(id=tenant, created_at=utcnow())
                                  .on_conflict_do_nothing(index_elements=["id"]))
            await session.execute(self._insert(ApiKey).values(
                key_hash=hash_key(api_key), tenant_id=tenant, created_at=utcnow())
                .on_conflict_do_nothing(index_elements=["key_hash"]))
        return api_key

    async def tenant_for_key(self, api_key: str) -> str | None:
        async with self.session() as session:
            return await session.scalar(sa.select(ApiKey.tenant_id).where(ApiKey.key_hash == hash_key(api_key)))

    @staticmethod
    async def _not_owned(connection, tenant: str, upload_ids: set[str]) -> set[str]:
        owned = await connection.scalars(sa.select(Upload.id).where(Upload.id.in_(upload_ids),
                                                                    Upload.tenant_id == tenant))
        return upload_ids - set(owned)

    async def uploads_not_owned(self, tenant: str, upload_ids: set[str]) -> set[str]:
        """The uploads of `upload_ids` that the tenant did not upload."""
        async with self.engine.connect() as connection:
            return await self._not_owned(connection, tenant, upload_ids)

    # --- jobs -------------------------------------------------------------------------------
    async def create_job(self, tenant: str, params: JobParams, request_id: str,
                         webhook_url: str = "") -> tuple[Job, bool]:
        """Inserts a job queued for ingest, with its work item in the outbox (sent_to_queue removes
        it; relay_work sends what is left); a repeated request_id with the same parameters returns
        the first job and False (other parameters: RequestIdReused). Every upload:// reference must
        be the tenant's own (else InvalidParams). Concurrent calls are committed together."""
        job_id, now, params_json = uuid.uuid4().hex, utcnow(), params.model_dump_json()
        values = dict(id=job_id, tenant_id=tenant, mode=params.mode, state=jobs_pb2.QUEUED,
                      params_json=params_json, request_id=request_id or None, progress=b"", outputs=b"",
                      error="", created_at=now, updated_at=now, queued_for="ingest", queued_at=now,
                      webhook_url=webhook_url)
        if not await self._new_jobs.submit((values, upload_refs(params))):
            async with self.session() as session:
                job = await session.scalar(sa.select(Job).where(Job.tenant_id == tenant, Job.request_id == request_id))
            if job.params_json != params_json:
                raise RequestIdReused(f"request_id {request_id!r} was used for job {job.id} with other "
                                      "parameters: use a new request_id for a different job")
            return job, False
        log.info("job state", job_id=job_id, tenant=tenant, stage="ingest", state="QUEUED", queued_for="ingest")
        metrics.job_created(params.mode)
        return Job(**values), True

    async def _insert_jobs(self, batch: list[NewJob]) -> list[bool | Exception]:
        """Inserts a batch of new jobs in one transaction: for each, whether it was inserted (False:
        its request_id was used before) or why not."""
        async with self._write_lock, self.engine.begin() as connection:  # Core: the hot path of CreateJob
            refusals = [await self._foreign_upload(connection, values["tenant_id"], uploads) if uploads else None
                        for values, uploads in batch]
            rows = [values for (values, _), refusal in zip(batch, refusals) if refusal is None]
            inserted = set((await connection.execute(self._insert_job, rows)).scalars()) if rows else set()
            new = [values for values in rows if values["id"] in inserted]
            if new:
                await connection.execute(sa.insert(WorkOutbox), [
                    dict(job_id=values["id"], stage="ingest", created_at=values["created_at"]) for values in new])
            hooks = [webhook_row(Job(**values)) for values in new if values["webhook_url"]]
            if hooks:
                await connection.execute(sa.insert(WebhookDelivery), hooks)
        return [refusal or values["id"] in inserted for (values, _), refusal in zip(batch, refusals)]

    async def _foreign_upload(self, connection, tenant: str, uploads: dict[str, str]) -> InvalidParams | None:
        not_owned = await self._not_owned(connection, tenant, set(uploads.values()))
        for field, upload_id in uploads.items():
            if upload_id in not_owned:
                return InvalidParams(foreign_upload(field, upload_id))
        return None

    async def record_upload(self, upload_id: str, tenant: str, size: int) -> None:
        async with self._writing() as session:
            await session.execute(self._insert(Upload).values(id=upload_id, tenant_id=tenant, size=size,
                                                              created_at=utcnow())
                                  .on_conflict_do_nothing(index_elements=["id"]))

    # --- the outbox of work items --------------------------------------------------------------
    async def unsent_work(self, older_than: datetime, limit: int = 100) -> list[tuple[WorkOutbox, Job]]:
        """Work items still in the outbox since before `older_than`, with their jobs."""
        async with self.session() as session:
            rows = await session.execute(sa.select(WorkOutbox, Job).join(Job, Job.id == WorkOutbox.job_id)
                                         .where(WorkOutbox.created_at < older_than)
                                         .order_by(WorkOutbox.created_at).limit(limit))
            return [(row[0], row[1]) for row in rows]

    async def sent_to_queue(self, job_ids: set[str]) -> None:
        """Work items NATS accepted (or that need sending no more) leave the outbox."""
        if job_ids:
            async with self._writing() as session:
                await session.execute(sa.delete(WorkOutbox).where(WorkOutbox.job_id.in_(job_ids)))

    async def get_job(self, tenant: str | None, job_id: str) -> Job | None:
        """A job, only if it belongs to the tenant (None: any tenant, for internal callers)."""
        query = sa.select(Job).where(Job.id == job_id)
        if tenant is not None:
            query = query.where(Job.tenant_id == tenant)
        async with self.session() as session:
            return await session.scalar(query)

    async def list_jobs(self, tenant: str, *, state: int = 0, mode: str = "", page_size: int = 50,
                        page_token: str = "") -> tuple[list[sa.Row], str]:
        """A page of the tenant's jobs, newest first: rows with a Job's attributes and `units`, its
        billed units (Core, not ORM objects: a page is read often and never changed)."""
        page_size = min(max(page_size or 50, 1), MAX_PAGE)
        jobs = Job.__table__
        query = (sa.select(jobs, sa.func.coalesce(Usage.__table__.c.units, 0).label("units"))
                 .outerjoin(Usage.__table__, Usage.__table__.c.job_id == jobs.c.id).where(jobs.c.tenant_id == tenant))
        if state:
            query = query.where(jobs.c.state == state)
        if mode:
            query = query.where(jobs.c.mode == mode)
        async with self.engine.connect() as connection:
            if page_token:
                last = (await connection.execute(sa.select(jobs.c.created_at, jobs.c.id).where(
                    jobs.c.id == page_token, jobs.c.tenant_id == tenant))).first()
                if last is None:
                    raise ValueError("page_token: not a token from this listing")
                query = query.where(sa.tuple_(jobs.c.created_at, jobs.c.id) < tuple(last))
            rows = (await connection.execute(
                query.order_by(jobs.c.created_at.desc(), jobs.c.id.desc()).limit(page_size + 1))).all()
        return rows[:page_size], (rows[page_size - 1].id if len(rows) > page_size else "")

    async def queue_position(self, job: Job) -> int:
        """1 + how many jobs wait for the same stage since before this one (0: not waiting)."""
        if not job.queued_for or job.queued_at is None:
            return 0
        async with self.session() as session:
            ahead = await session.scalar(sa.select(sa.func.count()).select_from(Job).where(
                Job.queued_for == job.queued_for,
                sa.or_(Job.queued_at < job.queued_at, sa.and_(Job.queued_at == job.queued_at, Job.id < job.id))))
        return ahead + 1

    async def cancel_job(self, tenant: str, job_id: str) -> Job | None:
        """Cancels a job that has not finished (idempotent); a finished job is left as it is."""
        event = events_pb2.JobEvent(event_id=f"{job_id}:cancel-request", job_id=job_id,
                                    cancelled=events_pb2.StageCancelled(stage="api"))
        async with self._writing() as session:
            job = await session.scalar(sa.select(Job).where(Job.id == job_id, Job.tenant_id == tenant)
                                       .with_for_update())
            if job is None:
                return None
            ended = job.state not in TERMINAL
            if ended:
                await self._insert_new(session, JobEvent, "event_id",
                                       [self._event_row(event, True, "cancelled through the API")])
                await self._insert_new(session, Usage, "job_id", [self._finish(job, jobs_pb2.CANCELLED)])
                if job.webhook_url:
                    await self._insert_new(session, WebhookDelivery, "message_id", [webhook_row(job)])
                log.info("job state", job_id=job_id, tenant=tenant, stage="api", state="CANCELLED", queued_for="")
        if ended:
            await self._ended(job)
        return job

    # --- events -----------------------------------------------------------------------------
    async def apply_event(self, event: events_pb2.JobEvent) -> Applied:
        """Applies an event at most once (its event_id is the key): a duplicate changes nothing."""
        return (await self.apply_events([event]))[0]

    async def apply_events(self, events: list[events_pb2.JobEvent]) -> list[Applied]:
        """Applies events in order, each at most once, in one transaction: all or none are
        committed. A batch costs a few statements in all, not a few per event: the jobs are read
        (and locked) together, then the events and bills are written together."""
        async with self._writing() as session:
            jobs = {job.id: job for job in await session.scalars(
                sa.select(Job).where(Job.id.in_({event.job_id for event in events})).order_by(Job.id)
                .with_for_update())}  # locked in one order: concurrent batches cannot deadlock
            seen = set(await session.scalars(sa.select(JobEvent.event_id).where(
                JobEvent.event_id.in_({event.event_id for event in events}))))
            outcomes, records, bills, hooks = [], [], [], []
            for event in events:
                if event.event_id in seen:
                    outcomes.append((Applied(event.job_id, False, "duplicate"), None, None))
                    continue
                seen.add(event.event_id)
                job = jobs.get(event.job_id)
                state_before = job.state if job else None
                applied, changed, ended = self._decide(job, event)
                records.append(self._event_row(event, applied.applied, applied.note))
                outcomes.append((applied, changed, ended))
                if ended:
                    bills.append(self._finish(ended, ended.state))
                if job is not None and job.webhook_url and job.state != state_before:
                    hooks.append(webhook_row(job))  # the job as it is now: each state change its own message
            await self._insert_new(session, JobEvent, "event_id", records)
            await self._insert_new(session, Usage, "job_id", bills)
            await self._insert_new(session, WebhookDelivery, "message_id", hooks)
        for _, changed, _ in outcomes:
            if changed:
                log.info("job state", **changed)
        for _, _, ended in outcomes:
            if ended:
                await self._ended(ended)
        return [applied for applied, _, _ in outcomes]

    def _decide(self, job: Job | None, event: events_pb2.JobEvent) -> tuple[Applied, dict | None, Job | None]:
        """Applies one event to its (locked) job in memory: (the outcome, the state change to log,
        the job if it ended)."""
        if job is None:
            return Applied(event.job_id, False, "unknown job"), None, None
        before = (job.state, job.queued_for)
        new_state, note = states.decide(job.state, event)
        if new_state is None:
            return Applied(event.job_id, False, note, job.tenant_id), None, None
        self._apply(job, new_state, event)
        ended = job if new_state in TERMINAL else None
        changed = None
        if (job.state, job.queued_for) != before:
            changed = dict(job_id=job.id, tenant=job.tenant_id, stage=event_stage(event),
                           state=state_name(job.state), queued_for=job.queued_for)
        return Applied(event.job_id, True, note, job.tenant_id), changed, ended

    def _apply(self, job: Job, new_state: int, event: events_pb2.JobEvent) -> None:
        kind = event.WhichOneof("kind")
        job.state = new_state
        job.updated_at = utcnow()
        if kind == "queued":
            job.queued_for, job.queued_at = event.queued.stage, job.updated_at
        elif kind != "progress" or new_state in TERMINAL:
            job.queued_for, job.queued_at = "", None
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

    async def _insert_new(self, session, model, key: str, rows: list[dict]) -> None:
        """Inserts the rows whose `key` is new (an event, a bill: each is recorded at most once)."""
        if rows:
            await session.execute(self._insert(model).on_conflict_do_nothing(index_elements=[key]), rows)

    @staticmethod
    def _event_row(event: events_pb2.JobEvent, applied: bool, note: str) -> dict:
        return dict(event_id=event.event_id, job_id=event.job_id, payload=event.SerializeToString(),
                    applied=applied, note=note, received_at=utcnow())

    @staticmethod
    def _finish(job: Job, final_state: int) -> dict:
        """Moves a job to a terminal state; returns its bill (a Usage row, inserted at most once)."""
        job.state, job.updated_at, job.queued_for, job.queued_at = final_state, utcnow(), "", None
        bill = billing.bill_for(job.mode, final_state, from_json(job.params_json).number_of_steps)
        return dict(job_id=job.id, tenant_id=job.tenant_id, mode=job.mode, units=bill.units,
                    unit_price=bill.unit_price, billed_at=utcnow())

    async def jobs_not_ended(self) -> dict[str, tuple[int, float]]:
        """Every state a job can be in before it ends: (how many jobs are in it, the longest time one
        of them has gone without a change, in seconds)."""
        async with self.session() as session:
            rows = (await session.execute(sa.select(Job.state, sa.func.count(), sa.func.min(Job.updated_at))
                                          .where(Job.state.not_in(TERMINAL)).group_by(Job.state))).all()
        now, found = utcnow(), {state: (count, oldest) for state, count, oldest in rows}
        result = {}
        for state in NOT_ENDED:
            count, oldest = found.get(state, (0, None))
            age = (now - (oldest if oldest.tzinfo else oldest.replace(tzinfo=timezone.utc))).total_seconds() if oldest else 0.0
            result[state_name(state)] = (count, age)
        return result

    async def job_events(self, job_id: str) -> list[JobEvent]:
        async with self.session() as session:
            return list(await session.scalars(sa.select(JobEvent).where(JobEvent.job_id == job_id)
                                              .order_by(JobEvent.seq)))

    # --- retention --------------------------------------------------------------------------
    async def jobs_for_retention(self, job_ids: set[str], upload_ids: set[str], batch: int = 500) -> list:
        """What retention needs of the jobs that own files in the store (`job_ids`) or name one of
        its uploads (`upload_ids`), as light rows (id, state, updated_at, outputs, params_json),
        read in batches: never every job of the ledger."""
        columns = (Job.id, Job.state, Job.updated_at, Job.outputs, Job.params_json)
        found: dict[str, sa.Row] = {}
        async with self.session() as session:
            ids = sorted(job_ids)
            for start in range(0, len(ids), batch):
                rows = await session.execute(sa.select(*columns).where(Job.id.in_(ids[start:start + batch])))
                found.update((row.id, row) for row in rows)
            uploads = sorted(upload_ids)
            for start in range(0, len(uploads), UPLOADS_PER_QUERY):
                rows = await session.execute(sa.select(*columns).where(
                    _naming(uploads[start:start + UPLOADS_PER_QUERY])))
                found.update((row.id, row) for row in rows)
        return list(found.values())

    async def uploads_in_use(self, upload_ids: set[str]) -> set[str]:
        """The uploads among `upload_ids` that a job which has not ended names. Only jobs whose
        parameters mention one are read (not every unfinished job: thousands may be queued)."""
        if not upload_ids:
            return set()
        async with self.session() as session:
            rows = await session.scalars(sa.select(Job.params_json).where(Job.state.not_in(TERMINAL),
                                                                          _naming(upload_ids)))
            return upload_ids & {upload_id for params_json in rows
                                 for upload_id in upload_refs(from_json(params_json)).values()}

    # --- webhooks ---------------------------------------------------------------------------
    async def webhook_secret(self, tenant: str, rotate: bool = False) -> str:
        """The tenant's signing secret, made on first use; `rotate`: a new one replaces it."""
        async with self._writing() as session:
            update = sa.update(Tenant).where(Tenant.id == tenant).values(webhook_secret=new_webhook_secret())
            if not rotate:
                update = update.where(Tenant.webhook_secret.is_(None))
            await session.execute(update)
            return await session.scalar(sa.select(Tenant.webhook_secret).where(Tenant.id == tenant))

    async def due_webhooks(self, now: datetime, limit: int = 50) -> list[tuple[WebhookDelivery, str]]:
        """Pending deliveries due by `now`, oldest first, each with its tenant's secret."""
        async with self.session() as session:
            rows = await session.execute(
                sa.select(WebhookDelivery, Tenant.webhook_secret).join(Tenant, Tenant.id == WebhookDelivery.tenant_id)
                .where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now)
                .order_by(WebhookDelivery.next_attempt_at).limit(limit))
            return [(row[0], row[1]) for row in rows]

    async def record_webhook_attempt(self, message_id: str, at: datetime, status_code: int, error: str,
                                     status: str, next_attempt_at: datetime | None) -> None:
        async with self._writing() as session:
            session.add(WebhookAttempt(message_id=message_id, at=at, status_code=status_code, error=error))
            await session.execute(sa.update(WebhookDelivery).where(WebhookDelivery.message_id == message_id)
                                  .values(status=status, next_attempt_at=next_attempt_at,
                                          attempts=WebhookDelivery.attempts + 1))

    async def webhook_deliveries(self, job_id: str) -> list[tuple[WebhookDelivery, list[WebhookAttempt]]]:
        """A job's deliveries, oldest first, each with its attempts, read in one statement (so that
        a delivery and its attempts are seen as of the same moment)."""
        async with self.session() as session:
            rows = await session.execute(
                sa.select(WebhookDelivery, WebhookAttempt).outerjoin(WebhookAttempt)
                .where(WebhookDelivery.job_id == job_id)
                .order_by(WebhookDelivery.created_at, WebhookDelivery.state, WebhookAttempt.id))
            found: dict[str, tuple[WebhookDelivery, list[WebhookAttempt]]] = {}
            for delivery, attempt in rows:
                attempts = found.setdefault(delivery.message_id, (delivery, []))[1]
                if attempt is not None:
                    attempts.append(attempt)
        return list(found.values())

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
