"""A job's history (JobService.GetJobHistory) from the events the ledger applied: progress points
with their losses, state changes and log lines."""

from datetime import datetime, timezone

from avlora.v1 import events_pb2, jobs_pb2
from services.ledger import states
from services.ledger.models import Job, JobEvent

MAX_POINTS = 2000   # a long run's points are thinned evenly to this many (the last one always kept)


def _thinned(points: list, limit: int = MAX_POINTS) -> list:
    if len(points) <= limit:
        return points
    stride = len(points) / (limit - 1)
    return [points[int(index * stride)] for index in range(limit - 1)] + [points[-1]]


def _seconds(value: datetime) -> float:
    """Unix seconds (SQLite gives naive datetimes: they are UTC)."""
    return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).timestamp()


def _note(event: events_pb2.JobEvent) -> str:
    kind = event.WhichOneof("kind")
    if kind == "started":
        worker = f" on {event.started.worker}" if event.started.worker else ""
        return f"{event.started.stage}{worker} (attempt {event.started.attempt})"
    if kind == "failed":
        return event.failed.reason
    if kind == "cancelled":
        return "cancelled by the tenant" if event.cancelled.stage == "api" else f"stopped in {event.cancelled.stage}"
    return ""


def job_history(job: Job, rows: list[JobEvent]) -> jobs_pb2.JobHistory:
    history = jobs_pb2.JobHistory(job_id=job.id)
    history.states.add(at=_seconds(job.created_at), state=jobs_pb2.QUEUED)
    points = []
    for row in rows:
        if not row.applied:
            continue
        event = events_pb2.JobEvent.FromString(row.payload)
        event.at = event.at or _seconds(row.received_at)  # a cancel through the API is stamped on receipt
        kind = event.WhichOneof("kind")
        if kind == "progress":
            progress = event.progress
            if progress.message:
                history.logs.add(at=event.at, stage=progress.stage, message=progress.message)
            if progress.total:
                points.append(jobs_pb2.ProgressPoint(
                    at=event.at, stage=progress.stage, done=progress.done, total=progress.total, unit=progress.unit,
                    loss=progress.loss, validation_loss=progress.validation_loss,
                    baseline_validation_loss=progress.baseline_validation_loss,
                    audio_loss=progress.audio_loss, video_loss=progress.video_loss))
            continue
        target = states.target_state(event)
        if target is not None and target != history.states[-1].state:
            history.states.add(at=event.at, state=target, note=_note(event))
    history.points.extend(_thinned(points))
    return history
