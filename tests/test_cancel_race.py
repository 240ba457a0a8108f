"""Cancel just as training starts (a real stack): the trainer has taken the work item and said
so, and is frozen (SIGSTOP) before it reads the samples; the job is cancelled, which deletes its
inputs; the trainer goes on and finds them gone. It stops cleanly: a `cancelled` event for the
train stage, no traceback, no retry."""

import os
import signal
import time
from pathlib import Path

import grpc

from avlora.auth import internal_metadata
from avlora.client import Endpoints
from avlora.demo_data import write_demo_dataset
from avlora.v1 import jobs_pb2, ledger_pb2, ledger_pb2_grpc, params_pb2


def test_a_job_cancelled_as_its_training_starts_stops_cleanly(make_stack, tmp_path):
    stack = make_stack(name="cancel-race")
    endpoints = Endpoints(api=stack.info["ledger_addr"], api_key=stack.info["api_key"],
                          ingest=stack.info["ingest_addr"], preprocess=stack.info["preprocess_addr"])
    jobs, auth = endpoints.jobs(), endpoints.auth
    dataset = endpoints.upload(write_demo_dataset("v2a", tmp_path / "v2a.zip", clips=2, frames=17, size=(64, 64)))
    job = jobs.CreateJob(jobs_pb2.CreateJobRequest(params=params_pb2.JobParams(v2a=params_pb2.V2AParams(
        training_data_url=dataset, number_of_steps=100, resolution="low", aspect_ratio="16:9",
        number_of_frames=17))), metadata=auth, timeout=60)
    trainer = stack.processes["trainer"]
    for update in jobs.WatchJob(jobs_pb2.GetJobRequest(job_id=job.id), metadata=auth, timeout=300):
        if update.state == jobs_pb2.TRAINING:  # the trainer's `started` event is applied
            os.kill(trainer.pid, signal.SIGSTOP)
            break
    try:
        cancelled = jobs.CancelJob(jobs_pb2.CancelJobRequest(job_id=job.id), metadata=auth, timeout=60)
    finally:
        os.kill(trainer.pid, signal.SIGCONT)
    assert cancelled.state == jobs_pb2.CANCELLED

    def train_events():
        with grpc.insecure_channel(stack.info["ledger_internal_addr"]) as channel:
            events = ledger_pb2_grpc.LedgerServiceStub(channel).ListJobEvents(
                ledger_pb2.ListJobEventsRequest(job_id=job.id), metadata=internal_metadata(stack.info["internal_token"]))
        return [(item.event.WhichOneof("kind"), item.event.event_id) for item in events.events
                if item.event.WhichOneof("kind") in ("started", "cancelled", "failed")
                and (item.event.started.stage or item.event.cancelled.stage or item.event.failed.stage) == "train"]

    deadline = time.monotonic() + 60
    while ("cancelled", f"{job.id}:train:cancelled") not in train_events():
        assert time.monotonic() < deadline, train_events()
        time.sleep(0.5)
    time.sleep(5)  # a retry would have started by now (the first one waits 2 s)
    assert train_events() == [("started", f"{job.id}:train:started:1"), ("cancelled", f"{job.id}:train:cancelled")]
    trainer_log = (Path(stack.info["logs"]) / "trainer.log").read_text()
    assert "stage crashed" not in trainer_log and "Traceback" not in trainer_log
    shown = jobs.GetJob(jobs_pb2.GetJobRequest(job_id=job.id), metadata=auth)
    assert shown.state == jobs_pb2.CANCELLED and shown.billed_units == 0
    assert trainer.poll() is None  # the trainer serves on
