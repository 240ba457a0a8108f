"""A trainer killed with SIGKILL mid-run: another trainer of the fleet resumes the job from its last
checkpoint (not from step 0), the job succeeds and is billed once."""

import signal
import time

import grpc

from avlora.client import Endpoints
from avlora.demo_data import write_demo_dataset
from avlora.auth import internal_metadata
from avlora.v1 import jobs_pb2, ledger_pb2, ledger_pb2_grpc, params_pb2, stages_pb2, stages_pb2_grpc


def trainer_with_job(stack, job_id) -> str | None:
    for label in ("trainer", "trainer-1"):
        with grpc.insecure_channel(stack.info[f"{label}_addr"]) as channel:
            status = stages_pb2_grpc.TrainerServiceStub(channel).GetTrainerStatus(
                stages_pb2.TrainerStatusRequest(), metadata=internal_metadata(stack.info["internal_token"]))
        if status.job_id == job_id and status.step >= 60:
            return label
    return None


def test_sigkilled_trainer_is_resumed_from_its_checkpoint_and_billed_once(make_stack, tmp_path):
    stack = make_stack(extra_env={"AVLORA_TRAIN_CHECKPOINT_EVERY": "25"}, workers={"trainer": 2})
    endpoints = Endpoints.find(str(stack.data_dir))
    data = endpoints.upload(write_demo_dataset("v2a", tmp_path / "demo.zip", clips=3, frames=9, size=(64, 64)))
    jobs = endpoints.jobs()
    params = params_pb2.V2AParams(training_data_url=data, number_of_steps=400, resolution="low", number_of_frames=9,
                                  validation_resolution="low", validation_number_of_frames=9)
    job = jobs.CreateJob(jobs_pb2.CreateJobRequest(params=params_pb2.JobParams(v2a=params)), metadata=endpoints.auth)

    deadline = time.monotonic() + 300
    while not (victim := trainer_with_job(stack, job.id)):
        assert time.monotonic() < deadline, jobs.GetJob(jobs_pb2.GetJobRequest(job_id=job.id), metadata=endpoints.auth)
        time.sleep(0.2)
    stack.processes[victim].send_signal(signal.SIGKILL)
    stack.processes[victim].wait()

    while (final := jobs.GetJob(jobs_pb2.GetJobRequest(job_id=job.id), metadata=endpoints.auth)).state not in (
            jobs_pb2.SUCCEEDED, jobs_pb2.FAILED):
        assert time.monotonic() < deadline + 300, final
        time.sleep(0.5)
    assert final.state == jobs_pb2.SUCCEEDED, final.error

    with grpc.insecure_channel(stack.info["ledger_internal_addr"]) as channel:
        events = ledger_pb2_grpc.LedgerServiceStub(channel).ListJobEvents(
            ledger_pb2.ListJobEventsRequest(job_id=job.id), metadata=internal_metadata(stack.info["internal_token"])).events
    kinds = [(e.event.WhichOneof("kind"), e.event) for e in events]
    restarts = [i for i, (kind, event) in enumerate(kinds) if kind == "started" and event.started.stage == "train"]
    assert len(restarts) == 2 and kinds[restarts[1]][1].started.attempt == 2
    resumed = [event.progress.done for kind, event in kinds[restarts[1]:] if kind == "progress" and event.progress.total]
    assert resumed and resumed[0] >= 50, f"resumed at step {resumed[:3]}, not from the checkpoint"
    usage = jobs.GetUsage(jobs_pb2.GetUsageRequest(job_id=job.id), metadata=endpoints.auth)
    assert [(line.units, line.state) for line in usage.lines] == [(400, jobs_pb2.SUCCEEDED)]
