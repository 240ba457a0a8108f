"""Prometheus metrics (prometheus-client). Every process serves its own on AVLORA_METRICS_PORT
(`serve`; `avlora up` gives each process a port and lists it in stack.json as `<label>_metrics_addr`).
The metrics are declared here, once; the code that learns a fact updates them:

- the ledger: jobs created and ended, billed units, database errors (`watch_database`), and in the
  process that applies events (`watch_backlog`): jobs not ended by state, how long the stalest of
  them has not changed, and each stage's JetStream queue;
- the stage worker (avlora/worker.py): stage durations, work items in flight, redeliveries, and the
  trainer's speed from its progress reports (`observe_progress`);
- every gRPC server (`GrpcMetrics`): requests by method and status code, with latency;
- the web page (services/web): HTTP requests by route and status code, with latency.
"""

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

import grpc
import structlog
from prometheus_client import Counter, Gauge, Histogram, start_http_server

log = structlog.get_logger()

# A stage runs for seconds (a small ingest) to hours (a long training).
STAGE_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 28800, 86400)

JOBS_CREATED = Counter("avlora_jobs_created", "Jobs created, by mode", ["mode"])
JOBS_ENDED = Counter("avlora_jobs_ended", "Jobs that reached a final state, by mode and state",
                     ["mode", "state"])
BILLED_UNITS = Counter("avlora_billed_units", "Units billed to jobs that ended, by mode", ["mode"])
LEDGER_DB_ERRORS = Counter("avlora_ledger_database_errors",
                           "Errors raised by the ledger's database, by kind (the SQLAlchemy error class)", ["kind"])
JOBS_NOT_ENDED = Gauge("avlora_jobs_not_ended", "Jobs that have not ended, by state", ["state"])
JOB_UNCHANGED = Gauge("avlora_job_unchanged_seconds",
                      "The longest any job in this state has gone without a change (state or progress)",
                      ["state"])
QUEUE_PENDING = Gauge("avlora_queue_pending", "Work items waiting in a stage's JetStream queue", ["stage"])
QUEUE_IN_PROGRESS = Gauge("avlora_queue_in_progress",
                          "Work items of a stage's queue that a worker holds (delivered, not acknowledged)",
                          ["stage"])

STAGE_SECONDS = Histogram("avlora_stage_duration_seconds",
                          "How long a stage ran one work item, by stage, mode and outcome "
                          "(succeeded, failed, cancelled, crashed, released)",
                          ["stage", "mode", "outcome"], buckets=STAGE_BUCKETS)
WORK_IN_FLIGHT = Gauge("avlora_work_items_in_flight", "Work items this worker runs now", ["stage"])
REDELIVERIES = Counter("avlora_work_redeliveries", "Work items received again (a second or later delivery)",
                       ["stage"])

STEPS_PER_SECOND = Gauge("avlora_train_steps_per_second", "Training steps per second of the current job",
                         ["mode"])
SECONDS_PER_STEP = Gauge("avlora_train_seconds_per_step", "Seconds per training step of the current job",
                         ["mode"])
TOKENS_PER_SECOND = Gauge("avlora_train_tokens_per_second",
                          "Transformer tokens (every modality, references too) trained per second", ["mode"])
GPU_MEMORY_PEAK = Gauge("avlora_train_gpu_memory_peak_bytes",
                        "The most GPU memory torch allocated in the current job (0 on a CPU)")

GRPC_REQUESTS = Counter("avlora_grpc_requests", "gRPC requests handled, by method and status code",
                        ["method", "code"])
GRPC_SECONDS = Histogram("avlora_grpc_request_duration_seconds",
                         "gRPC request latency (a streaming call: until its stream ended), by method", ["method"])

HTTP_REQUESTS = Counter("avlora_http_requests", "Web page requests, by route and status code", ["route", "code"])
HTTP_SECONDS = Histogram("avlora_http_request_duration_seconds", "Web page request latency (a streamed "
                         "response: until its last byte), by route", ["route"])


def serve(port: int) -> int:
    """Serves this process's metrics over HTTP on `port` (0: none); returns the port."""
    if port:
        start_http_server(port, addr="0.0.0.0")
    return port


def job_created(mode: str) -> None:
    JOBS_CREATED.labels(mode).inc()


def job_ended(mode: str, state: str, units: int) -> None:
    JOBS_ENDED.labels(mode, state).inc()
    BILLED_UNITS.labels(mode).inc(units)


def watch_database(sync_engine) -> None:
    """Counts every error the database raises through this engine (SQLAlchemy's handle_error)."""
    from sqlalchemy import event

    @event.listens_for(sync_engine, "handle_error")
    def count(context) -> None:
        LEDGER_DB_ERRORS.labels(type(context.sqlalchemy_exception or context.original_exception).__name__).inc()


def observe_progress(mode: str, progress) -> None:
    """The trainer's speed from one of its progress reports (jobs_pb2.Progress in steps)."""
    if progress.unit != "steps" or progress.rate <= 0:
        return
    STEPS_PER_SECOND.labels(mode).set(progress.rate)
    SECONDS_PER_STEP.labels(mode).set(1 / progress.rate)
    TOKENS_PER_SECOND.labels(mode).set(progress.tokens_per_second)
    GPU_MEMORY_PEAK.set(progress.gpu_memory_peak_bytes)


class StageRun:
    """One work item in a stage worker: in flight from `start` until `end(outcome)`."""

    def __init__(self, stage: str, mode: str, attempt: int):
        self.stage, self.mode, self.started = stage, mode, time.monotonic()
        WORK_IN_FLIGHT.labels(stage).inc()
        if attempt > 1:
            REDELIVERIES.labels(stage).inc()

    def end(self, outcome: str) -> float:
        seconds = time.monotonic() - self.started
        WORK_IN_FLIGHT.labels(self.stage).dec()
        STAGE_SECONDS.labels(self.stage, self.mode, outcome).observe(seconds)
        return seconds


def record_backlog(jobs: dict[str, tuple[int, float]], queues: dict[str, tuple[int, int]]) -> None:
    """jobs: state -> (jobs not ended, seconds the stalest went unchanged); queues: stage -> (pending,
    in progress)."""
    for state, (count, unchanged) in jobs.items():
        JOBS_NOT_ENDED.labels(state).set(count)
        JOB_UNCHANGED.labels(state).set(unchanged)
    for stage, (pending, in_progress) in queues.items():
        QUEUE_PENDING.labels(stage).set(pending)
        QUEUE_IN_PROGRESS.labels(stage).set(in_progress)


async def watch_backlog(read: Callable[[], Awaitable[tuple[dict, dict]]], stopping: asyncio.Event,
                        interval_s: float = 5.0) -> None:
    """Every `interval_s` until `stopping`, `record_backlog(*await read())`; a failed read is logged."""
    while not stopping.is_set():
        try:
            record_backlog(*await read())
        except Exception as error:
            log.warning("metrics: backlog not read", error=repr(error))
        try:
            await asyncio.wait_for(stopping.wait(), interval_s)
        except asyncio.TimeoutError:
            pass


class GrpcMetrics(grpc.aio.ServerInterceptor):
    """Counts every request by method and status code and times it (streams until they end)."""

    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        if handler is None:
            return None
        method = details.method
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                _timed_unary(method, handler.unary_unary), handler.request_deserializer, handler.response_serializer)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                _timed_unary(method, handler.stream_unary), handler.request_deserializer, handler.response_serializer)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                _timed_stream(method, handler.unary_stream), handler.request_deserializer, handler.response_serializer)
        return grpc.stream_stream_rpc_method_handler(
            _timed_stream(method, handler.stream_stream), handler.request_deserializer, handler.response_serializer)


@contextlib.contextmanager
def _counted(method: str, context):
    """Counts and times one call; its code is the one the servicer set, else what it raised."""
    started, raised = time.perf_counter(), None
    try:
        yield
    except BaseException as error:
        raised = error
        raise
    finally:
        code = context.code()
        if code is None:
            code = (grpc.StatusCode.CANCELLED if isinstance(raised, (asyncio.CancelledError, GeneratorExit))
                    else grpc.StatusCode.UNKNOWN if raised is not None else grpc.StatusCode.OK)
        GRPC_REQUESTS.labels(method, code.name).inc()
        GRPC_SECONDS.labels(method).observe(time.perf_counter() - started)


def _timed_unary(method: str, behaviour):
    async def timed(request, context):
        with _counted(method, context):
            return await behaviour(request, context)
    return timed


def _timed_stream(method: str, behaviour):
    async def timed(request, context):
        with _counted(method, context):
            async for reply in behaviour(request, context):
                yield reply
    return timed
