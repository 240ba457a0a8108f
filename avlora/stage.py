"""The stage contract: what a stage's plain `run(ctx)` may use and raise, apart from NATS.

A stage is `run(ctx: StageContext)` returning its output (a URI, or the trainer's Outputs). It
raises `UserError` for input the user must fix (the job fails, is not retried, is billed 0) and
`JobCancelled` when it notices the job was cancelled. A UserError's text never carries raw control
characters (file names inside a user's zip can hold any byte): they are escaped (\\x1b).
The NATS worker (`avlora/worker.py`), the trainer's ranks (`services/trainer/distributed.py`) and
tests (`JobContext.for_test`) all hand a stage an object satisfying `StageContext`.
"""

import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from google.protobuf.message import Message

from avlora.netguard import CONTROL_CHARACTERS
from avlora.params import JobParams
from avlora.settings import Settings
from avlora.store import ArtifactStore, JobFiles
from avlora.v1 import events_pb2, jobs_pb2

PROGRESS_INTERVAL_S = 0.5


def printable(text: str) -> str:
    """`text` with control characters escaped (\\x0d), for error texts and logs."""
    return CONTROL_CHARACTERS.sub(lambda match: f"\\x{ord(match.group()):02x}", text)


class UserError(Exception):
    """The user's input is wrong: the job fails with this message (control characters escaped), is
    not retried, is billed 0."""

    def __init__(self, message: str):
        super().__init__(printable(message))


class JobCancelled(Exception):
    """The job was cancelled while a stage ran it."""


@runtime_checkable
class StageContext(Protocol):
    job_id: str
    params: JobParams
    input_uri: str
    store: ArtifactStore
    settings: Settings

    @property
    def files(self) -> JobFiles: ...

    def progress(self, done: int, total: int, unit: str, message: str = "", **metrics) -> None: ...

    def log(self, message: str) -> None: ...

    def cancelled(self) -> bool: ...

    def raise_if_cancelled(self) -> None: ...


class Throttle:
    """True at most every `interval_s` seconds, and always for a final or forced report."""

    def __init__(self, interval_s: float = PROGRESS_INTERVAL_S):
        self.interval_s, self.last = interval_s, float("-inf")

    def ready(self, force: bool = False) -> bool:
        now = time.monotonic()
        if force or now - self.last >= self.interval_s:
            self.last = now
            return True
        return False


def new_event(job_id: str, event_id: str | None = None, **kind) -> events_pb2.JobEvent:
    """A job event; `event_id` makes it idempotent (the ledger applies each id at most once)."""
    return events_pb2.JobEvent(event_id=event_id or uuid.uuid4().hex, job_id=job_id, at=time.time(), **kind)


@dataclass
class JobContext:
    """The context of one job in one stage: progress and log lines become job events through
    `emit`; `cancel_flag` is set by whoever learns that the job was cancelled."""
    job_id: str
    tenant: str
    params: JobParams
    input_uri: str
    store: ArtifactStore
    settings: Settings
    stage: str
    attempt: int = 1
    emit: Callable[[events_pb2.JobEvent], None] = lambda event: None
    cancel_flag: threading.Event = field(default_factory=threading.Event)
    throttle: Throttle = field(default_factory=Throttle)

    @classmethod
    def for_test(cls, job_id: str, params: JobParams, store: ArtifactStore, input_uri: str = "",
                 stage: str = "test", settings: Settings | None = None) -> "JobContext":
        """A context whose events land in `ctx.events`, for calling a stage without NATS."""
        settings = settings or Settings(scratch=str(Path(tempfile.gettempdir()) / "avlora-scratch"))
        ctx = cls(job_id=job_id, tenant="test", params=params, input_uri=input_uri, store=store,
                  settings=settings, stage=stage)
        ctx.events = []
        ctx.emit = ctx.events.append
        return ctx

    @property
    def files(self) -> JobFiles:
        return JobFiles(self.job_id)

    def progress(self, done: int, total: int, unit: str, message: str = "", **metrics) -> None:
        if not self.throttle.ready(force=bool(message) or (total > 0 and done >= total)):
            return
        progress = jobs_pb2.Progress(stage=self.stage, done=done, total=total, unit=unit,
                                     message=printable(message), **metrics)  # messages name users' files
        self.emit(new_event(self.job_id, progress=progress))

    def log(self, message: str) -> None:
        self.progress(0, 0, "", message)

    def cancelled(self) -> bool:
        return self.cancel_flag.is_set()

    def raise_if_cancelled(self) -> None:
        if self.cancelled():
            raise JobCancelled()


StageFunction = Callable[[StageContext], object]


def stage_output(ctx: StageContext, key: str, make: Callable[[Path], Message]) -> str:
    """The URI of a stage's output message at `key`: the one an earlier try wrote (a redelivery), or
    `make(scratch)` in a fresh scratch folder (removed afterwards), written to the store."""
    def build() -> bytes:
        with ctx.settings.scratch_dir(f"{ctx.job_id}-") as scratch:
            return make(scratch).SerializeToString()
    return ctx.store.reuse_or_write(key, build)
