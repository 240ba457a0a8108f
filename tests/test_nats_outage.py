"""CreateJob while nats-server is down (a real stack, its nats-server killed): the job is recorded
and answered as QUEUED, a retry with the same request_id gets the same job, and once NATS is back
the job runs once (each stage started once), billed once. Nothing runs that the ledger does not record."""

import json
import time
from pathlib import Path

from avlora.auth import internal_metadata
from avlora.client import Endpoints
from avlora.demo_data import write_demo_dataset
from avlora.v1 import jobs_pb2, ledger_pb2, ledger_pb2_grpc, params_pb2

import grpc


def test_a_job_created_while_nats_is_down_runs_once_when_it_is_back(make_stack, database_url, tmp_path):
    stack = make_stack({"AVLORA_DATABASE_URL": database_url}, name="nats-outage")
    endpoints = Endpoints(api=stack.info["ledger_addr"], api_key=stack.info["api_key"],
                          ingest=stack.info["ingest_addr"], preprocess=stack.info["preprocess_addr"])
    jobs, auth = endpoints.jobs(), endpoints.auth
    dataset = endpoints.upload(write_demo_dataset("v2a", tmp_path / "v2a.zip", clips=2, frames=17, size=(64, 64)))
    nats = stack.processes["nats"]
    nats.kill()
    nats.wait()
    request = jobs_pb2.CreateJobRequest(request_id="during-the-outage", params=params_pb2.JobParams(
        v2a=params_pb2.V2AParams(training_data_url=dataset, number_of_steps=100, resolution="low",
                                 aspect_ratio="16:9", number_of_frames=17)))
    job = jobs.CreateJob(request, metadata=auth, timeout=60)
    assert (job.state, job.queued_for) == (jobs_pb2.QUEUED, "ingest")
    assert jobs.CreateJob(request, metadata=auth, timeout=60).id == job.id  # a retry: the same job
    time.sleep(3)  # NATS stays down a while longer
    listed = jobs.ListJobs(jobs_pb2.ListJobsRequest(), metadata=auth).jobs
    assert [(item.id, item.state) for item in listed] == [(job.id, jobs_pb2.QUEUED)]
    stack._spawn("nats")  # back, on the same port with the same storage

    deadline = time.monotonic() + 300
    while (shown := jobs.GetJob(jobs_pb2.GetJobRequest(job_id=job.id), metadata=auth)).state not in (
            jobs_pb2.SUCCEEDED, jobs_pb2.FAILED, jobs_pb2.CANCELLED) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert shown.state == jobs_pb2.SUCCEEDED, shown.error
    assert shown.billed_units == 100
    assert len(jobs.ListJobs(jobs_pb2.ListJobsRequest(), metadata=auth).jobs) == 1
    with grpc.insecure_channel(stack.info["ledger_internal_addr"]) as channel:
        events = ledger_pb2_grpc.LedgerServiceStub(channel).ListJobEvents(
            ledger_pb2.ListJobEventsRequest(job_id=job.id), metadata=internal_metadata(stack.info["internal_token"]))
    started = [item.event.started.stage for item in events.events if item.event.WhichOneof("kind") == "started"]
    assert started == ["ingest", "preprocess", "train"]  # each stage ran once
    # every event is the recorded job's (a `queued` event may still lose a race with the next stage's
    # `started`: refused as "queued for train while TRAINING", as in any run)
    assert not [item.note for item in events.events if item.note == "unknown job"]
    ledger_log = (Path(stack.info["logs"]) / "ledger.log").read_text()
    assert "unknown job" not in ledger_log
    lines = [json.loads(line) for line in ledger_log.splitlines() if line.startswith("{")]
    assert any(line.get("event", "").startswith("work item left in the outbox") and line["job_id"] == job.id
               for line in lines)
