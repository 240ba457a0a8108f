"""The job state machine: which event moves a job where. Pure functions over plain values."""

from avlora.job_state import state_name
from avlora.v1 import events_pb2
from avlora.v1.jobs_pb2 import CANCELLED, FAILED, INGESTING, PREPROCESSING, QUEUED, SUCCEEDED, TRAINING

STAGE_STATE = {"ingest": INGESTING, "preprocess": PREPROCESSING, "train": TRAINING}
QUEUED_AFTER = {"preprocess": INGESTING, "train": PREPROCESSING}  # the state a job is queued for a stage in
LEGAL = {
    QUEUED: {INGESTING, FAILED, CANCELLED},
    INGESTING: {PREPROCESSING, FAILED, CANCELLED},
    PREPROCESSING: {TRAINING, FAILED, CANCELLED},
    TRAINING: {SUCCEEDED, FAILED, CANCELLED},
}


def is_legal(current: int, target: int) -> bool:
    return target in LEGAL.get(current, set())


def target_state(event: events_pb2.JobEvent) -> int | None:
    """The state an event asks for (None for progress, which changes no state)."""
    kind = event.WhichOneof("kind")
    if kind == "started":
        return STAGE_STATE.get(event.started.stage)
    return {"failed": FAILED, "succeeded": SUCCEEDED, "cancelled": CANCELLED}.get(kind)


def decide(current: int, event: events_pb2.JobEvent) -> tuple[int | None, str]:
    """(new state or None to refuse, note). Progress, a queued job and a re-started stage keep the state."""
    kind = event.WhichOneof("kind")
    if kind == "queued":
        if QUEUED_AFTER.get(event.queued.stage) == current:
            return current, ""
        return None, f"queued for {event.queued.stage} while {state_name(current)}"
    if kind == "progress":
        if STAGE_STATE.get(event.progress.stage) == current:
            return current, ""
        return None, f"progress from {event.progress.stage} while {state_name(current)}"
    target = target_state(event)
    if target is None:
        return None, f"unknown event kind {kind!r}"
    if target == current and kind == "started":
        return current, "stage restarted (redelivery)"
    if is_legal(current, target):
        return target, ""
    return None, f"illegal transition {state_name(current)} -> {state_name(target)}"
