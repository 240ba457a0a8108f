"""The ledger on a real database (SQLite; PostgreSQL too when DATABASE_URL is set)."""

import asyncio
import time

import nats
import pytest
from sqlalchemy.exc import DataError
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from avlora import bus
from avlora.stage import new_event
from avlora.params import InvalidParams, from_proto
from avlora.v1 import events_pb2, jobs_pb2, params_pb2
from services.ledger.api import JobChanges
from services.ledger.consumer import apply_events
from services.ledger.ledger import RequestIdReused
from services.ledger.models import Base


def params(mode="v2a", steps=2000):
    message = params_pb2.V2AParams if mode == "v2a" else params_pb2.AV2AVParams
    return from_proto(params_pb2.JobParams(**{mode: message(training_data_url="https://e.com/d.zip",
                                                            number_of_steps=steps)}))


def started(job_id, stage, attempt=1):
    return new_event(job_id, f"{job_id}:{stage}:started:{attempt}",
                         started=events_pb2.StageStarted(stage=stage, attempt=attempt))


def succeeded(job_id):
    return new_event(job_id, f"{job_id}:succeeded", succeeded=events_pb2.JobSucceeded(
        outputs=jobs_pb2.Outputs(lora_file="store://x.safetensors"), steps_completed=10))


def failed(job_id, reason="clip.mp4 has no audio track"):
    return new_event(job_id, f"{job_id}:failed", failed=events_pb2.StageFailed(stage="preprocess", reason=reason))


def full_run(job_id):
    progress = new_event(job_id, progress=jobs_pb2.Progress(stage="train", done=5, total=10, unit="steps", loss=0.5))
    return [started(job_id, "ingest"), started(job_id, "preprocess"), started(job_id, "train"), progress,
            succeeded(job_id)]


async def new_job(ledger, tenant="acme", **kw):
    await ledger.add_api_key(tenant)
    job, created = await ledger.create_job(tenant, params(**kw), "")
    assert created and job.state == jobs_pb2.QUEUED
    return job


async def test_migrations_match_the_models(ledger):
    async with ledger.engine.connect() as connection:
        diff = await connection.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync), Base.metadata))
    assert diff == []


async def test_success_is_billed_max_100_steps_at_the_mode_price(ledger):
    for mode, steps, price in (("v2a", 2000, 0.0049), ("av2av", 100, 0.0068), ("v2a", 150, 0.0049)):
        job = await new_job(ledger, mode=mode, steps=steps)
        for event in full_run(job.id):
            assert (await ledger.apply_event(event)).applied
        assert (await ledger.get_job("acme", job.id)).state == jobs_pb2.SUCCEEDED
        bill = await ledger.bill_of(job.id)
        assert (bill.units, bill.unit_price) == (max(100, steps), price)


async def test_replaying_the_event_stream_twice_bills_once(ledger):
    job = await new_job(ledger)
    events = full_run(job.id)
    for event in events + events:
        await ledger.apply_event(event)
    rows = await ledger.job_events(job.id)
    assert len(rows) == len(events)
    assert [row.event_id for row in rows] == [event.event_id for event in events]
    usage = await ledger.usage("acme")
    assert [(u.job_id, u.units) for u, _ in usage] == [(job.id, 2000)]
    replay = await ledger.apply_event(events[-1])
    assert (replay.applied, replay.note) == (False, "duplicate")


async def test_failure_and_cancellation_are_billed_zero(ledger):
    failing = await new_job(ledger)
    await ledger.apply_event(started(failing.id, "ingest"))
    await ledger.apply_event(failed(failing.id))
    job = await ledger.get_job("acme", failing.id)
    assert (job.state, job.error) == (jobs_pb2.FAILED, "clip.mp4 has no audio track")
    assert (await ledger.bill_of(failing.id)).units == 0

    cancelled = await new_job(ledger)
    await ledger.apply_event(started(cancelled.id, "ingest"))
    assert (await ledger.cancel_job("acme", cancelled.id)).state == jobs_pb2.CANCELLED
    assert (await ledger.cancel_job("acme", cancelled.id)).state == jobs_pb2.CANCELLED  # idempotent
    late = await ledger.apply_event(succeeded(cancelled.id))  # a trainer that finished anyway
    assert not late.applied and "illegal transition CANCELLED -> SUCCEEDED" in late.note
    assert (await ledger.bill_of(cancelled.id)).units == 0


async def test_cancelling_a_finished_job_changes_nothing(ledger):
    job = await new_job(ledger)
    for event in full_run(job.id):
        await ledger.apply_event(event)
    assert (await ledger.cancel_job("acme", job.id)).state == jobs_pb2.SUCCEEDED
    assert (await ledger.bill_of(job.id)).units == 2000


@pytest.mark.parametrize("events, note", [
    (lambda j: [succeeded(j)], "illegal transition QUEUED -> SUCCEEDED"),
    (lambda j: [started(j, "train")], "illegal transition QUEUED -> TRAINING"),
    (lambda j: [started(j, "ingest"), started(j, "train")], "illegal transition INGESTING -> TRAINING"),
    (lambda j: [started(j, "ingest"), failed(j), started(j, "preprocess")], "illegal transition FAILED -> PREPROCESSING"),
])
async def test_illegal_transitions_are_refused_and_recorded(ledger, events, note):
    job = await new_job(ledger)
    results = [await ledger.apply_event(event) for event in events(job.id)]
    assert not results[-1].applied and results[-1].note == note
    rows = await ledger.job_events(job.id)
    assert rows[-1].applied is False and rows[-1].note == note


async def test_a_redelivered_stage_start_keeps_the_state_and_stale_progress_is_ignored(ledger):
    job = await new_job(ledger)
    await ledger.apply_event(started(job.id, "ingest", attempt=1))
    again = await ledger.apply_event(started(job.id, "ingest", attempt=2))
    assert again.applied and (await ledger.get_job("acme", job.id)).state == jobs_pb2.INGESTING
    stale = new_event(job.id, progress=jobs_pb2.Progress(stage="train", done=1, total=2))
    assert not (await ledger.apply_event(stale)).applied


def mixed_batch(first: str, second: str, third: str) -> list:
    """Events of three jobs interleaved: a repeat inside the batch, a refused transition, an event
    of an unknown job, two jobs ending (billed) and events after one ended."""
    return [started(first, "ingest"), started(second, "ingest"), started(first, "ingest"),
            new_event(first, f"{first}:p1", progress=jobs_pb2.Progress(stage="ingest", done=1, total=4, unit="bytes")),
            started(third, "train"), failed(second), started(first, "preprocess"),
            new_event(first, f"{first}:p2", progress=jobs_pb2.Progress(stage="preprocess", message="clip 1")),
            new_event("f" * 32, f"{first}:orphan", failed=events_pb2.StageFailed(stage="ingest", reason="x")),
            started(second, "preprocess"), started(first, "train"), succeeded(first), failed(first)]


async def test_a_batch_of_events_ends_exactly_as_the_same_events_one_at_a_time(ledger):
    batched = [(await new_job(ledger)).id for _ in range(3)]
    single = [(await new_job(ledger)).id for _ in range(3)]
    await ledger.apply_event(started(batched[0], "ingest"))  # already applied: a duplicate in the batch
    await ledger.apply_event(started(single[0], "ingest"))
    in_batch = [(r.applied, r.note) for r in await ledger.apply_events(mixed_batch(*batched))]
    one_by_one = [(r.applied, r.note) for r in [await ledger.apply_event(e) for e in mixed_batch(*single)]]
    assert in_batch == one_by_one
    assert in_batch[2] == in_batch[0] == (False, "duplicate")
    assert in_batch[-1] == (False, "illegal transition SUCCEEDED -> FAILED")

    def outcome(job, bill, events):
        return (job.state, job.error, jobs_pb2.Progress.FromString(job.progress), job.outputs,
                bill and (bill.units, bill.unit_price), [(e.applied, e.note) for e in events])
    for b, s in zip(batched, single):
        assert outcome(await ledger.get_job("acme", b), await ledger.bill_of(b), await ledger.job_events(b)) == \
            outcome(await ledger.get_job("acme", s), await ledger.bill_of(s), await ledger.job_events(s))
    assert [(await ledger.get_job("acme", j)).state for j in batched] == [jobs_pb2.SUCCEEDED, jobs_pb2.FAILED,
                                                                          jobs_pb2.QUEUED]
    assert (await ledger.bill_of(batched[0])).units == 2000 and (await ledger.bill_of(batched[1])).units == 0
    assert [e.event_id for e in await ledger.job_events(batched[0])] == list(dict.fromkeys(
        e.event_id for e in mixed_batch(*batched) if e.job_id == batched[0]))


async def test_an_event_the_database_refuses_holds_back_none_of_its_batch(ledger, nats_url):
    """PostgreSQL refuses a NUL in text: that event is retried alone; the rest of its batch applies."""
    if ledger.engine.dialect.name != "postgresql":
        pytest.skip("SQLite stores any text: the refusal needs PostgreSQL")
    jobs = [(await new_job(ledger)).id for _ in range(4)]
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await bus.ensure_spine(js, ack_wait=30, max_deliver=5)
    for index, job_id in enumerate(jobs):  # all published before the consumer fetches: one batch
        await bus.publish_event(js, started(job_id, "ingest"))
        await bus.publish_event(js, failed(job_id, "bad\x00name.mp4" if index == 1 else "bad.mp4"))
    stopping = asyncio.Event()
    consumer = asyncio.create_task(apply_events(js, ledger, JobChanges(nc), stopping))
    deadline = time.monotonic() + 20
    while (await ledger.get_job("acme", jobs[-1])).state != jobs_pb2.FAILED and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    stopping.set()
    await consumer
    await nc.close()
    assert [(await ledger.get_job("acme", job_id)).state for job_id in jobs] == [
        jobs_pb2.FAILED, jobs_pb2.INGESTING, jobs_pb2.FAILED, jobs_pb2.FAILED]
    assert await ledger.bill_of(jobs[1]) is None


async def test_request_id_makes_a_retried_create_return_the_same_job(ledger):
    await ledger.add_api_key("acme")
    first, created = await ledger.create_job("acme", params(), "req-1")
    again, created_again = await ledger.create_job("acme", params(), "req-1")
    other, _ = await ledger.create_job("acme", params(), "req-2")
    assert created and not created_again and first.id == again.id != other.id
    await ledger.add_api_key("globex")
    theirs, created_theirs = await ledger.create_job("globex", params(), "req-1")  # request ids are per tenant
    assert created_theirs and theirs.id != first.id


async def test_a_reused_request_id_with_other_parameters_is_refused(ledger):
    await ledger.add_api_key("acme")
    first, _ = await ledger.create_job("acme", params(steps=2000), "req-1")
    with pytest.raises(RequestIdReused, match=f"request_id 'req-1' was used for job {first.id}"):
        await ledger.create_job("acme", params(steps=3000), "req-1")
    assert len((await ledger.list_jobs("acme"))[0]) == 1


async def test_concurrent_creates_end_as_they_would_one_at_a_time(ledger):
    """Creates that arrive together are committed together; each caller still gets its own answer:
    a retried request_id returns the one job, a reused one with other parameters and a foreign
    upload are refused, and none of that holds back the rest of the batch."""
    await ledger.add_api_key("acme")
    await ledger.add_api_key("globex")
    await ledger.record_upload("theirs01", "globex", 10)
    foreign = from_proto(params_pb2.JobParams(v2a=params_pb2.V2AParams(training_data_url="upload://theirs01")))
    calls = ([ledger.create_job("acme", params(), f"req-{index}") for index in range(30)]
             + [ledger.create_job("acme", params(), "again") for _ in range(5)]
             + [ledger.create_job("acme", params(steps=3000), "again"), ledger.create_job("acme", foreign, "")])
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    created = outcomes[:30]
    assert all(isinstance(outcome, tuple) for outcome in created)
    assert len({job.id for job, _ in created}) == 30 and all(new for _, new in created)
    again = outcomes[30:35]
    assert len({job.id for job, _ in again}) == 1 and [new for _, new in again] == [True, False, False, False, False]
    assert isinstance(outcomes[35], RequestIdReused) and again[0][0].id in str(outcomes[35])
    assert isinstance(outcomes[36], InvalidParams) and "no upload upload://theirs01 of this tenant" in str(outcomes[36])
    listed, _ = await ledger.list_jobs("acme", page_size=100)
    assert sorted(job.id for job in listed) == sorted({job.id for job, _ in created + again})


async def test_a_create_the_database_refuses_holds_back_none_of_the_others(ledger):
    if ledger.engine.dialect.name != "postgresql":
        pytest.skip("SQLite stores any text: the refusal needs PostgreSQL")
    await ledger.add_api_key("acme")
    outcomes = await asyncio.gather(*(ledger.create_job("acme", params(), "bad\x00id" if index == 2 else f"r{index}")
                                      for index in range(6)), return_exceptions=True)
    assert isinstance(outcomes[2], DataError)
    assert all(isinstance(outcome, tuple) and outcome[1] for index, outcome in enumerate(outcomes) if index != 2)
    assert len((await ledger.list_jobs("acme"))[0]) == 5


async def test_an_upload_is_usable_only_by_the_tenant_that_uploaded_it(ledger):
    await ledger.add_api_key("acme")
    await ledger.add_api_key("globex")
    await ledger.record_upload("0123abcd", "acme", 10)
    theirs = from_proto(params_pb2.JobParams(v2a=params_pb2.V2AParams(training_data_url="upload://0123abcd")))
    with pytest.raises(InvalidParams, match="training_data_url: no upload upload://0123abcd of this tenant"):
        await ledger.create_job("globex", theirs, "")
    job, created = await ledger.create_job("acme", theirs, "")
    assert created and job.tenant_id == "acme"
    unknown = from_proto(params_pb2.JobParams(v2a=params_pb2.V2AParams(
        training_data_url="upload://0123abcd", validation=[params_pb2.V2AValidation(video_url="upload://nope")])))
    with pytest.raises(InvalidParams, match="validation.0.video_url: no upload upload://nope"):
        await ledger.create_job("acme", unknown, "")


async def test_uploads_in_use_are_those_an_unfinished_job_names(ledger):
    """Retention keeps an ended job's upload while another unfinished job names it. The ledger finds
    those jobs by the id (the exact id: not one it prefixes, and '_' is no wildcard)."""
    await ledger.add_api_key("acme")
    for upload_id in ("u_1", "u_12", "ux1", "done"):
        await ledger.record_upload(upload_id, "acme", 10)

    async def job_naming(upload_id, validation_id=""):
        validation = [params_pb2.V2AValidation(video_url=f"upload://{validation_id}")] if validation_id else []
        job, _ = await ledger.create_job("acme", from_proto(params_pb2.JobParams(v2a=params_pb2.V2AParams(
            training_data_url=f"upload://{upload_id}", validation=validation))), "")
        return job

    await job_naming("u_12", validation_id="ux1")
    ended = await job_naming("done")
    await ledger.apply_event(failed(ended.id))
    assert await ledger.uploads_in_use({"u_1", "u_12", "ux1", "done", "never"}) == {"u_12", "ux1"}
    assert await ledger.uploads_in_use(set()) == set()


async def test_a_job_waiting_for_a_worker_knows_its_queue_and_place(ledger):
    await ledger.add_api_key("acme")
    first, second = [(await ledger.create_job("acme", params(), ""))[0] for _ in range(2)]
    assert [(job.queued_for, await ledger.queue_position(job)) for job in (first, second)] == [
        ("ingest", 1), ("ingest", 2)]
    await ledger.apply_event(started(first.id, "ingest"))
    first = await ledger.get_job("acme", first.id)
    assert (first.state, first.queued_for, await ledger.queue_position(first)) == (jobs_pb2.INGESTING, "", 0)
    assert await ledger.queue_position(await ledger.get_job("acme", second.id)) == 1
    await ledger.apply_event(new_event(first.id, f"{first.id}:preprocess:queued",
                                       queued=events_pb2.StageQueued(stage="preprocess")))
    first = await ledger.get_job("acme", first.id)
    assert (first.state, first.queued_for, await ledger.queue_position(first)) == (
        jobs_pb2.INGESTING, "preprocess", 1)
    await ledger.apply_event(started(first.id, "preprocess"))
    assert (await ledger.get_job("acme", first.id)).queued_for == ""
    late = await ledger.apply_event(new_event(first.id, f"{first.id}:x:queued",
                                              queued=events_pb2.StageQueued(stage="preprocess")))
    assert not late.applied and "queued for preprocess while PREPROCESSING" in late.note


async def test_tenants_see_only_their_own_jobs_and_keys_are_stored_hashed(ledger):
    key = await ledger.add_api_key("acme")
    assert await ledger.tenant_for_key(key) == "acme"
    assert await ledger.tenant_for_key(key + "x") is None
    job, _ = await ledger.create_job("acme", params(), "")
    await ledger.add_api_key("globex")
    assert await ledger.get_job("globex", job.id) is None
    assert await ledger.cancel_job("globex", job.id) is None
    assert (await ledger.list_jobs("globex"))[0] == []
    async with ledger.engine.connect() as connection:
        stored = (await connection.exec_driver_sql("SELECT key_hash FROM api_keys")).scalars().all()
    assert key not in stored and all(len(value) == 64 for value in stored)


async def test_list_jobs_pages_and_filters(ledger):
    await ledger.add_api_key("acme")
    ids = [(await ledger.create_job("acme", params("av2av" if i % 2 else "v2a"), ""))[0].id for i in range(5)]
    page, token = await ledger.list_jobs("acme", page_size=2)
    seen = [job.id for job in page]
    while token:
        page, token = await ledger.list_jobs("acme", page_size=2, page_token=token)
        seen += [job.id for job in page]
    assert sorted(seen) == sorted(ids) and len(seen) == 5
    assert len((await ledger.list_jobs("acme", mode="av2av"))[0]) == 2
    assert (await ledger.list_jobs("acme", state=jobs_pb2.FAILED))[0] == []


async def test_a_log_line_keeps_the_known_progress_and_losses(ledger):
    job = await new_job(ledger)
    for event in full_run(job.id)[:3]:
        await ledger.apply_event(event)
    await ledger.apply_event(new_event(job.id, progress=jobs_pb2.Progress(
        stage="train", done=7, total=10, unit="steps", validation_loss=0.4, baseline_validation_loss=0.9)))
    await ledger.apply_event(new_event(job.id, progress=jobs_pb2.Progress(stage="train", message="rendering")))
    stored = jobs_pb2.Progress.FromString((await ledger.get_job("acme", job.id)).progress)
    assert (stored.done, stored.total, stored.validation_loss, stored.message) == (7, 10, 0.4, "rendering")
    # a preview's sampling steps count without losses: the losses of the run stay on the job
    await ledger.apply_event(new_event(job.id, progress=jobs_pb2.Progress(
        stage="train", done=3, total=30, unit="sampling steps", message="preview 1/1")))
    stored = jobs_pb2.Progress.FromString((await ledger.get_job("acme", job.id)).progress)
    assert (stored.unit, stored.done, stored.validation_loss, stored.baseline_validation_loss) == (
        "sampling steps", 3, 0.4, 0.9)


async def test_a_jobs_history_keeps_its_state_changes_logs_and_thinned_points(ledger):
    """GetJobHistory's content (services/ledger/history.py) from the events applied: a long run's
    progress points thinned evenly to MAX_POINTS with the last kept, log lines, and the states with
    their notes; refused events leave no trace."""
    from services.ledger.history import MAX_POINTS, job_history

    job = await new_job(ledger)
    steps = MAX_POINTS * 2 + 1
    events = [started(job.id, "ingest"), started(job.id, "preprocess"), started(job.id, "train"),
              new_event(job.id, progress=jobs_pb2.Progress(stage="train", message="untrained validation loss 1.7"))]
    events += [new_event(job.id, progress=jobs_pb2.Progress(stage="train", done=step, total=steps, unit="steps",
                                                            loss=1 / step, baseline_validation_loss=1.7))
               for step in range(1, steps + 1)]
    events += [failed(job.id, "out of memory"), started(job.id, "train", attempt=2)]  # the last one is refused
    for applied in await ledger.apply_events(events):
        assert applied.applied or applied.note.startswith("illegal transition")
    history = job_history(await ledger.get_job("acme", job.id), await ledger.job_events(job.id))
    assert [(jobs_pb2.JobState.Name(s.state), s.note) for s in history.states] == [
        ("QUEUED", ""), ("INGESTING", "ingest (attempt 1)"), ("PREPROCESSING", "preprocess (attempt 1)"),
        ("TRAINING", "train (attempt 1)"), ("FAILED", "out of memory")]
    assert [line.message for line in history.logs] == ["untrained validation loss 1.7"]
    done = [point.done for point in history.points]
    assert len(done) == MAX_POINTS and done[0] == 1 and done[-1] == steps and done == sorted(set(done))
    assert all(point.loss == 1 / point.done and point.baseline_validation_loss == 1.7 for point in history.points)
