"""The ledger's NATS side: applies every job event to the database, once, in order; fails the job
of a work item that exhausted its deliveries (a worker died on it every time)."""

import asyncio
import json

import structlog
from google.protobuf.message import DecodeError

from avlora import bus
from avlora.stage import new_event
from avlora.v1 import events_pb2
from services.ledger.api import JobChanges
from services.ledger.ledger import Ledger

log = structlog.get_logger()
MAX_DELIVERIES_ADVISORY = f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{bus.WORK_STREAM}.*"


async def apply_events(js, ledger: Ledger, changes: JobChanges, stopping: asyncio.Event) -> None:
    subscription = await js.pull_subscribe_bind(durable=bus.LEDGER_CONSUMER, stream=bus.EVENT_STREAM)
    while not stopping.is_set():
        try:
            messages = await subscription.fetch(100, timeout=1)
        except (asyncio.TimeoutError, TimeoutError):
            continue
        for message in messages:
            await _apply_one(message, ledger, changes)


async def _apply_one(message, ledger: Ledger, changes: JobChanges) -> None:
    try:
        event = events_pb2.JobEvent.FromString(message.data)
    except DecodeError:
        log.error("undecodable event dropped", subject=message.subject)
        await message.ack()
        return
    try:
        result = await ledger.apply_event(event)
    except Exception as error:  # e.g. the database is unavailable: retry later
        log.error("event not applied", event_id=event.event_id, error=repr(error))
        await message.nak(delay=1)
        return
    if not result.applied and result.note != "duplicate":
        log.info("event refused", event_id=event.event_id, job_id=event.job_id, note=result.note)
    changes.notify(event.job_id)
    await message.ack()


async def fail_exhausted_work(nc, js, ledger: Ledger, changes: JobChanges) -> None:
    """A work item redelivered max_deliver times without an ack fails its job (nothing stays stuck)."""
    async def on_advisory(message) -> None:
        try:
            advisory = json.loads(message.data)
            stored = await js.get_msg(bus.WORK_STREAM, advisory["stream_seq"])
            work = events_pb2.StageWork.FromString(stored.data)
            stage = stored.subject.rsplit(".", 1)[-1]
            reason = f"{stage} worker stopped {advisory.get('deliveries', 'too many')} times on this job"
            await ledger.apply_event(new_event(
                work.job_id, f"{work.job_id}:{stage}:exhausted",
                failed=events_pb2.StageFailed(stage=stage, reason=f"internal error: {reason}")))
            await js.delete_msg(bus.WORK_STREAM, advisory["stream_seq"])
            changes.notify(work.job_id)
        except Exception as error:
            log.error("max-deliveries advisory not handled", error=str(error))

    await nc.subscribe(MAX_DELIVERIES_ADVISORY, cb=on_advisory)
