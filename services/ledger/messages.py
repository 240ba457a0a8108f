"""A job as the public API shows it (GetJob, WatchJob, ListJobs, webhook payloads)."""

import functools
import json
from datetime import datetime, timezone

from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp

from avlora.job_state import state_name

from avlora.modes import MODES
from avlora.params import from_json, to_proto
from avlora.v1 import jobs_pb2, params_pb2
from services.ledger.billing import Bill
from services.ledger.models import Job


def timestamp(value: datetime) -> Timestamp:
    """Timestamp.FromDatetime, 5x faster (SQLite gives naive datetimes: they are UTC)."""
    micros = round((value if value.tzinfo else value.replace(tzinfo=timezone.utc)).timestamp() * 1e6)
    return Timestamp(seconds=micros // 1_000_000, nanos=micros % 1_000_000 * 1000)


@functools.lru_cache(maxsize=4096)
def params_message(params_json: str) -> params_pb2.JobParams:
    """The stored parameters as a message (a job's parameters never change; callers copy it)."""
    return to_proto(from_json(params_json))


def job_message(job: Job, units: int = 0, queue_position: int = 0) -> jobs_pb2.Job:
    bill = Bill(units, MODES[job.mode].unit_price)
    return jobs_pb2.Job(
        id=job.id, mode=job.mode, state=job.state, params=params_message(job.params_json),
        request_id=job.request_id or "", created_at=timestamp(job.created_at), updated_at=timestamp(job.updated_at),
        progress=jobs_pb2.Progress.FromString(job.progress or b""), error=job.error,
        outputs=jobs_pb2.Outputs.FromString(job.outputs or b""), billed_units=bill.units,
        unit_price=bill.unit_price, cost=bill.cost, queued_for=job.queued_for, queue_position=queue_position,
        webhook_url=job.webhook_url or "")


def webhook_type(state: int) -> str:
    return f"job.{state_name(state).lower()}"


def webhook_body(job: Job, units: int = 0) -> str:
    """The body POSTed when a job reached its current state: Standard Webhooks' envelope around the
    job as GetJob returns it (without queue_position and download_urls, which age)."""
    data = json_format.MessageToDict(job_message(job, units), preserving_proto_field_name=True)
    when = job.updated_at if job.updated_at.tzinfo else job.updated_at.replace(tzinfo=timezone.utc)
    return json.dumps({"type": webhook_type(job.state), "timestamp": when.isoformat(), "data": data},
                      separators=(",", ":"))
