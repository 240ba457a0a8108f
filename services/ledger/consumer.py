"""The ledger's NATS side: applies every job event to the database, once, in order; fails the job
of a work item that exhausted its deliveries (a worker died on it every time)."""

import asyncio
import json

import structlog
from google.protobuf.message import DecodeError
from nats.js import api
from nats.js.errors import NotFoundError

from avlora import bus
from avlora.stage import new_event
from avlora.v1 import events_pb2
from services.ledger.api import JobChanges
from services.ledger.group_commit import each_alone_if_refused
from services.ledger.ledger import Ledger, event_stage

log = structlog.get_logger()
MAX_DELIVERIES_ADVISORY = f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{bus.WORK_STREAM}.*"
ADVISORY_STREAM = "AVLORA_ADVISORIES"
ADVISORY_CONSUMER = "ledger-advisories"


async def apply_events(js, ledger: Ledger, changes: JobChanges, stopping: asyncio.Event) -> None:
    """Applies the events in order, a fetched batch (up to 100) per transaction: a ledger that
    fell behind catches up at a fraction of the cost per event."""
    await bus.pull_batches(js, bus.EVENT_STREAM, bus.LEDGER_CONSUMER, 100,
                           lambda messages: _apply_batch(messages, ledger, changes), stopping)


async def _apply_batch(messages: list, ledger: Ledger, changes: JobChanges) -> None:
    decoded = []
    for message in messages:
        try:
            decoded.append((message, events_pb2.JobEvent.FromString(message.data)))
        except DecodeError:
            log.error("undecodable event dropped", subject=message.subject)
            await message.ack()
    if not decoded:
        return
    try:
        results = await each_alone_if_refused(ledger.apply_events, [event for _, event in decoded])
    except Exception as error:  # e.g. the database is unavailable: the whole batch, later
        await _retry_later(decoded, error)
        return
    for (message, event), result in zip(decoded, results):
        if isinstance(result, Exception):  # refused by the database: retried later, alone
            await _retry_later([(message, event)], result)
            continue
        if not result.applied and result.note != "duplicate":
            log.info("event refused", event_id=event.event_id, job_id=event.job_id, tenant=result.tenant,
                     stage=event_stage(event), note=result.note)
        await message.ack()
    await changes.announce(event.job_id for _, event in decoded)


async def _retry_later(decoded: list, error: Exception) -> None:
    log.error("events not applied", event_ids=[event.event_id for _, event in decoded], error=repr(error))
    for message, _ in decoded:
        await message.nak(delay=1)


async def ensure_advisory_stream(js) -> None:
    """Keeps JetStream's max-deliveries advisories of the work queues in a stream of their own, so
    that one published while the ledger is down waits for it (a plain NATS message would be lost)."""
    config = api.StreamConfig(name=ADVISORY_STREAM, subjects=[MAX_DELIVERIES_ADVISORY],
                              retention=api.RetentionPolicy.LIMITS, max_age=30 * 24 * 3600)
    await bus.ensure_stream(js, config)
    await bus.ensure_consumer(js, ADVISORY_STREAM, api.ConsumerConfig(
        durable_name=ADVISORY_CONSUMER, ack_policy=api.AckPolicy.EXPLICIT, ack_wait=30))


async def fail_exhausted_work(js, ledger: Ledger, changes: JobChanges, stopping: asyncio.Event) -> None:
    """A work item redelivered max_deliver times without an ack fails its job (nothing stays stuck),
    also when the advisory came while the ledger was down."""
    async def handle(messages: list) -> None:
        for message in messages:
            try:
                job_id = await _fail_exhausted(js, ledger, json.loads(message.data))
            except Exception as error:  # e.g. the database is unavailable: retry later
                log.error("max-deliveries advisory not handled", error=repr(error))
                await message.nak(delay=2)
                continue
            if job_id:
                await changes.announce([job_id])
            await message.ack()

    await bus.pull_batches(js, ADVISORY_STREAM, ADVISORY_CONSUMER, 10, handle, stopping)


async def _fail_exhausted(js, ledger: Ledger, advisory: dict) -> str:
    """Fails the job of the exhausted work item and drops the item; "" if the item is gone."""
    try:
        stored = await js.get_msg(bus.WORK_STREAM, advisory["stream_seq"])
    except NotFoundError:
        return ""
    work = events_pb2.StageWork.FromString(stored.data)
    stage = stored.subject.rsplit(".", 1)[-1]
    reason = f"{stage} worker stopped {advisory.get('deliveries', 'too many')} times on this job"
    await ledger.apply_event(new_event(
        work.job_id, f"{work.job_id}:{stage}:exhausted",
        failed=events_pb2.StageFailed(stage=stage, reason=f"internal error: {reason}")))
    try:
        await js.delete_msg(bus.WORK_STREAM, advisory["stream_seq"])
    except NotFoundError:
        pass
    return work.job_id
