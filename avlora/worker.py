"""The stage worker: pulls a stage's work queue and runs the stage's plain function on each item.

The stage contract (`run(ctx)`, `UserError`, `JobCancelled`) is `avlora/stage.py`. This module is
the only place that knows about acks, heartbeats, redelivery and the events they produce.
"""

import asyncio
import contextvars
import threading
import time
import traceback

import structlog

from avlora import bus, metrics
from avlora.params import from_proto
from avlora.settings import Settings
from avlora.stage import JobCancelled, JobContext, StageFunction, UserError, new_event, printable
from avlora.stores import open_store
from avlora.v1 import events_pb2

log = structlog.get_logger()


def run_in_daemon_thread(function: StageFunction, ctx: JobContext) -> asyncio.Future:
    """Runs a stage in a daemon thread: a stage released at shutdown (its work redelivered elsewhere)
    must not keep the process alive, as a thread of asyncio's default executor would."""
    loop = asyncio.get_running_loop()
    future = loop.create_future()

    def settle(result, error) -> None:
        if not future.done():
            future.set_exception(error) if error else future.set_result(result)

    def target() -> None:
        try:
            result, error = function(ctx), None
        except BaseException as raised:
            result, error = None, raised
        try:
            loop.call_soon_threadsafe(settle, result, error)
        except RuntimeError:  # the loop is gone: the work was released at shutdown
            pass

    context = contextvars.copy_context()  # the job's log context (structlog.contextvars) goes along
    threading.Thread(target=context.run, args=(target,), name=f"stage-{ctx.stage}-{ctx.job_id}",
                     daemon=True).start()
    return future


class StageWorker:
    """Runs one stage's function over its durable pull consumer until `stop()`, on up to
    `concurrency` work items at once (each with its own heartbeats and cancellation watch)."""

    def __init__(self, stage: str, run: StageFunction, settings: Settings, concurrency: int = 1):
        self.stage, self.run_stage, self.settings = stage, run, settings
        self.concurrency = max(1, concurrency)
        self.store = open_store(settings.store_url)
        self.stopping = asyncio.Event()

    async def serve(self) -> None:
        nc = await bus.connect(self.settings.nats_url, f"{self.stage}-{self.settings.worker_name}")
        js = nc.jetstream()
        await bus.ensure_spine(js, ack_wait=self.settings.ack_wait_s, max_deliver=self.settings.max_deliver)
        kv = await js.key_value(bus.CANCEL_BUCKET)
        log.info("worker ready", stage=self.stage, worker=self.settings.worker_name, concurrency=self.concurrency)
        try:  # on stop, each running item settles itself: finished, or released for redelivery
            await bus.pull_concurrent(js, bus.WORK_STREAM, bus.consumer_name(self.stage), self.concurrency,
                                      lambda message: self._handle_logged(js, kv, message), self.stopping)
        finally:
            await bus.close(nc)

    async def _handle_logged(self, js, kv, message) -> None:
        try:
            await self._handle(js, kv, message)
        except Exception:  # e.g. NATS unavailable mid-item: it is redelivered after ack_wait
            log.error("work item not settled", stage=self.stage, error=traceback.format_exc())

    def stop(self) -> None:
        self.stopping.set()

    async def _handle(self, js, kv, message) -> None:
        work = events_pb2.StageWork()
        try:
            work.ParseFromString(message.data)
            params = from_proto(work.params)
        except Exception as error:  # a malformed item can never succeed: drop it, fail its job
            log.error("malformed work item dropped", stage=self.stage, error=repr(error))
            if work.job_id:
                await self._fail(js, work.job_id, f"invalid work item: {error}", f"{work.job_id}:{self.stage}:failed")
            await message.term()
            return
        attempt = message.metadata.num_delivered
        job_id = work.job_id
        # Every line logged for this item, here and in the stage's thread, names the job (this task's context).
        structlog.contextvars.bind_contextvars(job_id=job_id, tenant=work.tenant, stage=self.stage)
        if await bus.is_cancelled(kv, job_id):
            await message.ack()
            return
        loop = asyncio.get_running_loop()

        def emit(event: events_pb2.JobEvent) -> None:  # called from the stage's thread
            if event.HasField("progress"):
                metrics.observe_progress(params.mode, event.progress)
            asyncio.run_coroutine_threadsafe(bus.publish_event(js, event), loop)

        ctx = JobContext(job_id=job_id, tenant=work.tenant, params=params,
                           input_uri=work.input_uri, store=self.store, settings=self.settings,
                           stage=self.stage, attempt=attempt, emit=emit)
        await bus.publish_event(js, new_event(
            job_id, f"{job_id}:{self.stage}:started:{attempt}",
            started=events_pb2.StageStarted(stage=self.stage, worker=self.settings.worker_name, attempt=attempt)))
        log.info("stage started", attempt=attempt)
        keepalive = asyncio.create_task(self._keep_alive(message, kv, ctx))
        run = metrics.StageRun(self.stage, params.mode, attempt)
        task = run_in_daemon_thread(self.run_stage, ctx)
        outcome = "crashed"
        try:
            outcome = await self._settle(js, message, work, ctx, task)
        finally:
            keepalive.cancel()
            log.info("stage ended", outcome=outcome, seconds=round(run.end(outcome), 3))

    async def _settle(self, js, message, work, ctx, task) -> str:
        """Acts on the stage's end; returns its outcome: succeeded, failed, cancelled, crashed or released."""
        job_id, stage = work.job_id, self.stage
        stop_wait = asyncio.ensure_future(self.stopping.wait())
        await asyncio.wait([task, stop_wait], return_when=asyncio.FIRST_COMPLETED)
        stop_wait.cancel()
        if not task.done():  # shutting down: give the item a grace period, then release it
            done, _ = await asyncio.wait([task], timeout=self.settings.ack_wait_s / 3)
            if not done:
                ctx.cancel_flag.set()  # ask the stage to stop early; its work is redelivered
                await message.nak()
                log.info("released work on shutdown")
                return "released"
        try:
            result = task.result()
        except UserError as error:  # never retried: terminate the message, fail the job
            await self._fail(js, job_id, str(error), f"{job_id}:{stage}:failed")
            await message.term()
            return "failed"
        except JobCancelled:
            if self.stopping.is_set() and not await self._cancel_requested(js, job_id):
                await message.nak()
                return "released"
            await self._cancelled(js, message, job_id)
            return "cancelled"
        except Exception as error:
            if await self._cancel_requested(js, job_id):  # e.g. its inputs, deleted when it was cancelled
                log.info("stage stopped: its job was cancelled", error=repr(error))
                await self._cancelled(js, message, job_id)
                return "cancelled"
            log.error("stage crashed", attempt=ctx.attempt, error=traceback.format_exc())
            if ctx.attempt >= self.settings.max_deliver:
                await self._fail(js, job_id, f"internal error in {stage}: {error}", f"{job_id}:{stage}:failed")
                await message.ack()
            else:
                await message.nak(delay=min(30, 2 ** ctx.attempt))
            return "crashed"
        if stage in bus.NEXT_STAGE:
            await bus.publish_work(js, bus.NEXT_STAGE[stage], events_pb2.StageWork(
                job_id=job_id, tenant=work.tenant, params=work.params, input_uri=result))
            await bus.publish_event(js, new_event(job_id, f"{job_id}:{bus.NEXT_STAGE[stage]}:queued",
                                                  queued=events_pb2.StageQueued(stage=bus.NEXT_STAGE[stage])))
        else:
            await bus.publish_event(js, new_event(
                job_id, f"{job_id}:succeeded", succeeded=events_pb2.JobSucceeded(
                    outputs=result, steps_completed=ctx.params.number_of_steps)))
        await message.ack()
        return "succeeded"

    async def _cancelled(self, js, message, job_id: str) -> None:
        await bus.publish_event(js, new_event(
            job_id, f"{job_id}:{self.stage}:cancelled", cancelled=events_pb2.StageCancelled(stage=self.stage)))
        await message.ack()

    async def _fail(self, js, job_id: str, reason: str, event_id: str) -> None:
        """Fails the job with `reason` (control characters escaped: a reason may name a user's file)."""
        await bus.publish_event(js, new_event(
            job_id, event_id, failed=events_pb2.StageFailed(stage=self.stage, reason=printable(reason))))

    async def _cancel_requested(self, js, job_id: str) -> bool:
        return await bus.is_cancelled(await js.key_value(bus.CANCEL_BUCKET), job_id)

    async def _keep_alive(self, message, kv, ctx: JobContext) -> None:
        """Heartbeats the message so long work is not redelivered, and watches for cancellation."""
        last_beat = time.monotonic()
        while True:
            await asyncio.sleep(1.0)
            if await bus.is_cancelled(kv, ctx.job_id):
                ctx.cancel_flag.set()
            if time.monotonic() - last_beat >= self.settings.ack_wait_s / 3:
                await message.in_progress()
                last_beat = time.monotonic()
