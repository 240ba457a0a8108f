"""Retention: what is deleted from the artifact store, and when.

- A job's inputs (its `ingest/` and `preprocess/` keys, except any listed as an output such as the
  debug dataset, and the uploads it named that no unfinished job names) go as soon as it ends. The
  ledger does it, on the terminal transition: it is the one place that sees every end exactly once
  (success, failure in any stage, exhausted retries, a cancel while queued) and it runs after the
  state is committed, so a retried stage never finds its inputs gone.
- Outputs and checkpoints (everything else under `jobs/<id>/`) go AVLORA_RETENTION_DAYS (default 30)
  after the job ended; uploads nobody used go after the same period.
- The ledger's event consumer (exactly one per deployment) applies both rules to the whole store
  at start and every AVLORA_RETENTION_SWEEP_HOURS (default 24; 0: never), as `avlora gc` does.
- `avlora gc [--dry-run]` applies both rules to the whole store (and catches up on anything a
  stage wrote after its job ended), reporting what it reclaims.
"""

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import structlog

from avlora.job_state import TERMINAL, output_uris
from avlora.params import from_json, upload_refs
from avlora.store import UPLOAD_SCHEME, ArtifactStore, JobFiles, StoredObject, store_key
from avlora.v1 import jobs_pb2

log = structlog.get_logger()


def upload_ids(params_json: str) -> set[str]:
    """The uploads a job's parameters name (dataset and validation media)."""
    return set(upload_refs(from_json(params_json)).values())


def upload_key(upload_id: str) -> str:
    return store_key(UPLOAD_SCHEME + upload_id)


def output_keys(outputs: bytes) -> set[str]:
    return {store_key(uri) for uri in output_uris(jobs_pb2.Outputs.FromString(outputs or b"")).values()}


def is_input(job_id: str, key: str) -> bool:
    return key.startswith(tuple(folder + "/" for folder in JobFiles(job_id).input_dirs))


@dataclass
class Plan:
    """What a collection removes: (key, bytes, reason) per artifact."""
    items: list[tuple[str, int, str]] = field(default_factory=list)

    def add(self, found: StoredObject, reason: str) -> None:
        self.items.append((found.key, found.size, reason))

    @property
    def total_bytes(self) -> int:
        return sum(size for _, size, _ in self.items)

    def apply(self, store: ArtifactStore) -> None:
        for key, _, _ in self.items:
            store.remove(key)


def inputs_of_ended_job(store: ArtifactStore, job, unused_uploads: set[str]) -> Plan:
    """A just-ended job's inputs, and `unused_uploads`: the ids of its uploads that no unfinished
    job names."""
    plan, keep = Plan(), output_keys(job.outputs)
    for folder in JobFiles(job.id).input_dirs:
        for found in store.objects(folder):
            if found.key not in keep:
                plan.add(found, "input of an ended job")
    for key in sorted(map(upload_key, unused_uploads)):
        try:
            plan.items.append((key, store.size(key), "upload of an ended job"))
        except FileNotFoundError:  # already gone (another job used it too)
            pass
    return plan


@dataclass
class StoreListing:
    """What the store holds, listed once per collection: each job's files, and the uploads."""
    job_files: dict[str, list[StoredObject]]
    uploads: list[StoredObject]

    @classmethod
    def of(cls, store: ArtifactStore) -> "StoreListing":
        job_files: dict[str, list[StoredObject]] = {}
        for found in store.objects("jobs"):
            job_files.setdefault(found.key.split("/")[1], []).append(found)
        return cls(job_files, list(store.objects("uploads")))

    @property
    def upload_ids(self) -> set[str]:
        return {found.key.split("/", 1)[1] for found in self.uploads}


def collect(listing: StoreListing, jobs: list, days: float, now: datetime | None = None) -> Plan:
    """Everything retention removes from what the store holds when outputs and checkpoints are
    kept `days` days, given the ledger's jobs: at least every job that owns files in the store or
    names one of its uploads (Ledger.jobs_for_retention)."""
    now = now or datetime.now(UTC)
    cutoff = (now - timedelta(days=days)).timestamp()
    by_id = {job.id: job for job in jobs}
    uploads = {job.id: set(map(upload_key, upload_ids(job.params_json))) for job in jobs}
    active_uploads = set().union(*(uploads[job.id] for job in jobs if job.state not in TERMINAL))
    ended_uploads = set().union(*(uploads[job.id] for job in jobs if job.state in TERMINAL))
    plan = Plan()
    for job_id, objects in listing.job_files.items():
        job = by_id.get(job_id)
        if job is None:
            if max(o.modified for o in objects) < cutoff:
                for found in objects:
                    plan.add(found, "job unknown to the ledger, untouched for the retention period")
            continue
        if job.state not in TERMINAL:
            continue
        ended = _timestamp(job.updated_at)
        keep = output_keys(job.outputs)
        for found in objects:
            if ended < cutoff:
                plan.add(found, "job ended more than the retention period ago")
            elif is_input(job_id, found.key) and found.key not in keep:
                plan.add(found, "input of an ended job")
    for found in listing.uploads:
        if found.key in active_uploads:
            continue
        if found.key in ended_uploads:
            plan.add(found, "upload of an ended job")
        elif found.modified < cutoff:
            plan.add(found, "upload unused for the retention period")
    return plan


def _timestamp(value: datetime) -> float:
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


def job_end_callback(ledger, store: ArtifactStore):
    """The ledger's on_job_end hook: deletes the ended job's inputs."""
    def remove_inputs(job, unused_uploads: set[str]) -> None:
        inputs_of_ended_job(store, job, unused_uploads).apply(store)

    async def on_end(job) -> None:
        uploads = upload_ids(job.params_json)
        unused = uploads - await ledger.uploads_in_use(uploads)
        await asyncio.to_thread(remove_inputs, job, unused)  # store I/O off the ledger's event loop

    return on_end


async def plan_for_store(ledger, store: ArtifactStore, days: float) -> Plan:
    """`collect` over the whole store (listed once), reading from the ledger only the jobs that own
    files there or name its uploads. An upload that a job created meanwhile names is then taken
    out of the plan."""
    listing = await asyncio.to_thread(StoreListing.of, store)  # store I/O off the event loop
    jobs = await ledger.jobs_for_retention(set(listing.job_files), listing.upload_ids)
    return await without_uploads_in_use(ledger, await asyncio.to_thread(collect, listing, jobs, days))


async def without_uploads_in_use(ledger, plan: Plan) -> Plan:
    """The plan without the uploads an unfinished job names now (one created since the jobs were read)."""
    planned = {key.split("/", 1)[1] for key, _, _ in plan.items if key.startswith("uploads/")}
    named = {upload_key(upload_id) for upload_id in await ledger.uploads_in_use(planned)}
    return Plan([item for item in plan.items if item[0] not in named])


async def sweep(ledger, store: ArtifactStore, days: float, every_s: float, stopping: asyncio.Event) -> None:
    """Applies retention to the whole store now and every `every_s` seconds until `stopping` (the
    ledger's event consumer runs it). A sweep that fails (the database or the store unreachable)
    is logged and tried again at the next interval."""
    while not stopping.is_set():
        try:
            plan = await plan_for_store(ledger, store, days)
            await asyncio.to_thread(plan.apply, store)
            log.info("retention sweep", files_removed=len(plan.items), bytes_removed=plan.total_bytes,
                     retention_days=days)
        except Exception as error:
            log.error("retention sweep failed; retried at the next interval", retry_in_s=every_s, error=repr(error))
        try:
            await asyncio.wait_for(stopping.wait(), every_s)
        except asyncio.TimeoutError:
            pass
