"""How a job's state reads to a person: one spelling for the CLI and the services' logs."""

from avlora.v1 import jobs_pb2

TERMINAL = frozenset({jobs_pb2.SUCCEEDED, jobs_pb2.FAILED, jobs_pb2.CANCELLED})  # a job ended in one of these


def output_uris(outputs: jobs_pb2.Outputs) -> dict[str, str]:
    """Field name -> store URI of every output file the job lists (not its audio figures)."""
    return {field.name: value for field, value in outputs.ListFields() if isinstance(value, str) and value}


def state_name(state: int) -> str:
    return jobs_pb2.JobState.Name(state)


def state_label(job: jobs_pb2.Job) -> str:
    """QUEUED for preprocess (place 3) while the job waits for a worker; else the state's name."""
    if not job.queued_for:
        return state_name(job.state)
    place = f" (place {job.queue_position})" if job.queue_position else ""
    return f"QUEUED for {job.queued_for}{place}"
