"""The NATS JetStream spine: one work queue per stage, one event stream, a cancellation bucket.

Subjects: `avlora.work.<stage>` (WorkQueue retention, one durable pull consumer per stage shared by
every worker of that fleet) and `avlora.events.<job>` (the ledger's source of truth). Payloads are
protobuf messages; every publish carries a message id so JetStream drops duplicates.
"""

import asyncio
import socket
import time
from urllib.parse import urlparse

import nats
import structlog
from nats.js import api
from nats.js.errors import BadRequestError, NotFoundError

from avlora.v1 import events_pb2

log = structlog.get_logger()

WORK_STREAM = "AVLORA_WORK"
EVENT_STREAM = "AVLORA_EVENTS"
CANCEL_BUCKET = "avlora_cancelled"
CHANGED_SUBJECT = "avlora.changed"  # core NATS: a job id, sent by the ledger process that changed the job
LEDGER_CONSUMER = "ledger"
STAGES = ("ingest", "preprocess", "train")
NEXT_STAGE = {"ingest": "preprocess", "preprocess": "train"}
DUPLICATE_WINDOW_S = 2 * 3600


def work_subject(stage: str) -> str:
    return f"avlora.work.{stage}"


def event_subject(job_id: str) -> str:
    return f"avlora.events.{job_id}"


def consumer_name(stage: str) -> str:
    return f"work-{stage}"


async def wait_for_port(url: str, timeout: float = 10.0) -> None:
    """Polls the server's TCP port (a refused nats.connect costs seconds and a traceback)."""
    parsed = urlparse(url)
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((parsed.hostname, parsed.port or 4222), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"NATS at {url} is not answering") from None
            await asyncio.sleep(0.05)


async def connect(url: str, name: str) -> nats.NATS:
    await wait_for_port(url)
    return await nats.connect(url, name=name, max_reconnect_attempts=-1, reconnect_time_wait=0.5)


async def close(nc: nats.NATS) -> None:
    """Flushes and closes (every publish and ack was awaited already; drain() hangs on pull
    subscriptions until its timeout)."""
    try:
        await nc.flush(timeout=5)
    except Exception:
        pass
    await nc.close()


async def ensure_spine(js, *, ack_wait: float, max_deliver: int) -> None:
    """Creates (or updates) the streams, the stage consumers, the ledger's consumer and the
    cancellation bucket. Safe to call from every process at start-up."""
    streams = [
        api.StreamConfig(name=WORK_STREAM, subjects=["avlora.work.*"],
                         retention=api.RetentionPolicy.WORK_QUEUE, duplicate_window=DUPLICATE_WINDOW_S),
        api.StreamConfig(name=EVENT_STREAM, subjects=["avlora.events.>"],
                         retention=api.RetentionPolicy.LIMITS, duplicate_window=DUPLICATE_WINDOW_S,
                         max_age=30 * 24 * 3600),
    ]
    for config in streams:
        await ensure_stream(js, config)
    for stage in STAGES:
        await ensure_consumer(js, WORK_STREAM, api.ConsumerConfig(
            durable_name=consumer_name(stage), filter_subject=work_subject(stage),
            ack_policy=api.AckPolicy.EXPLICIT, ack_wait=ack_wait, max_deliver=max_deliver,
            max_ack_pending=1000))
    await ensure_consumer(js, EVENT_STREAM, api.ConsumerConfig(
        durable_name=LEDGER_CONSUMER, ack_policy=api.AckPolicy.EXPLICIT, ack_wait=30,
        max_ack_pending=10000))
    try:
        await js.key_value(CANCEL_BUCKET)
    except Exception:
        await js.create_key_value(bucket=CANCEL_BUCKET, ttl=7 * 24 * 3600)


async def ensure_stream(js, config: api.StreamConfig) -> None:
    """Creates the stream, or brings an existing one to this configuration."""
    try:
        await js.add_stream(config)
    except BadRequestError:
        await js.update_stream(config)


async def ensure_consumer(js, stream: str, config: api.ConsumerConfig) -> None:
    """Creates a missing consumer. An existing one keeps its configuration (adding it again would
    silently update it to whichever process started last)."""
    try:
        await js.consumer_info(stream, config.durable_name)
    except NotFoundError:
        await js.add_consumer(stream, config)


async def queue_depths(js) -> dict[str, tuple[int, int]]:
    """Each stage's work queue: (items waiting, items a worker holds unacknowledged)."""
    depths = {}
    for stage in STAGES:
        info = await js.consumer_info(WORK_STREAM, consumer_name(stage))
        depths[stage] = (info.num_pending, info.num_ack_pending)
    return depths


async def publish_work(js, stage: str, work: events_pb2.StageWork) -> None:
    """Queues a job for a stage; a repeat (redelivered upstream stage) is dropped by JetStream."""
    await js.publish(work_subject(stage), work.SerializeToString(),
                     headers={"Nats-Msg-Id": f"{work.job_id}:{stage}"})


async def publish_event(js, event: events_pb2.JobEvent) -> None:
    await js.publish(event_subject(event.job_id), event.SerializeToString(),
                     headers={"Nats-Msg-Id": event.event_id})


async def mark_cancelled(js, job_id: str) -> None:
    kv = await js.key_value(CANCEL_BUCKET)
    await kv.put(job_id, b"1")


async def is_cancelled(kv, job_id: str) -> bool:
    try:
        return (await kv.get(job_id)).value == b"1"
    except Exception:  # key not found
        return False


async def _fetch(subscription, count: int, stopping: asyncio.Event, durable: str) -> list:
    """Up to `count` messages; none after a second without any, or after a failed fetch (a NATS
    blip: logged, and the next fetch waits a moment)."""
    try:
        return await subscription.fetch(count, timeout=1)
    except (asyncio.TimeoutError, TimeoutError):
        return []
    except Exception as error:
        if not stopping.is_set():
            log.warning("fetch failed", consumer=durable, error=repr(error))
            await asyncio.sleep(0.5)
        return []


async def pull_batches(js, stream: str, durable: str, batch: int, handle_batch, stopping: asyncio.Event) -> None:
    """Until `stopping`, fetches a durable pull consumer's messages, up to `batch` at a time, and
    awaits `handle_batch(messages)` on each fetch: in order, one batch at a time."""
    subscription = await js.pull_subscribe_bind(durable=durable, stream=stream)
    while not stopping.is_set():
        messages = await _fetch(subscription, batch, stopping, durable)
        if messages:
            await handle_batch(messages)


async def pull_concurrent(js, stream: str, durable: str, slots: int, handle, stopping: asyncio.Event) -> None:
    """Until `stopping`, runs `handle(message)` on up to `slots` messages at once, fetching only
    what a free slot can take; then awaits the running ones."""
    subscription = await js.pull_subscribe_bind(durable=durable, stream=stream)
    running: set[asyncio.Task] = set()
    try:
        while not stopping.is_set():
            if len(running) >= slots:  # every slot busy: wait for one
                await asyncio.wait(running, timeout=1, return_when=asyncio.FIRST_COMPLETED)
                continue
            for message in await _fetch(subscription, slots - len(running), stopping, durable):
                task = asyncio.create_task(handle(message))
                running.add(task)
                task.add_done_callback(running.discard)
    finally:
        if running:
            await asyncio.wait(running)
