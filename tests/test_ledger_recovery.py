"""A work item that exhausts its deliveries while the ledger is down still fails its job: the
max-deliveries advisory waits in a JetStream stream until the ledger is back."""

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import grpc
import nats
from test_spine import handled, running_worker, wait_for

from avlora import bus
from avlora.stack import wait_healthy
from avlora.v1 import jobs_pb2, jobs_pb2_grpc, params_pb2
from services.ledger.consumer import ADVISORY_STREAM


async def stream_messages(nats_url: str, stream: str) -> int:
    nc = await nats.connect(nats_url)
    info = await nc.jetstream().stream_info(stream)
    await nc.close()
    return info.state.messages


def restart_ledger(stack) -> None:
    """Starts the ledger again with the same database, ports and credentials."""
    info = stack.info
    env = os.environ | stack.extra_env | {
        "AVLORA_DATA_DIR": str(stack.data_dir), "AVLORA_NATS_URL": info["nats"], "AVLORA_WORKER_NAME": "ledger",
        "AVLORA_LEDGER_KEYS": f"{info['tenant']}:{info['api_key']}", "AVLORA_INTERNAL_TOKEN": info["internal_token"],
        "AVLORA_GRPC_PORT": info["ledger_addr"].rsplit(":", 1)[1],
        "AVLORA_INTERNAL_PORT": info["ledger_internal_addr"].rsplit(":", 1)[1]}
    log = (Path(info["logs"]) / "ledger.log").open("ab")
    stack.processes["ledger"] = subprocess.Popen([sys.executable, "-m", "services.ledger"], env=env, stdout=log,
                                                 stderr=subprocess.STDOUT, cwd=Path(__file__).parent.parent)
    wait_healthy(info["ledger_addr"], 60, stack.processes["ledger"], "ledger")


def test_work_exhausted_while_the_ledger_is_down_fails_the_job_once_it_is_back(make_stack, tmp_path):
    stack = make_stack(extra_env={"AVLORA_MAX_DELIVER": "2", "AVLORA_ACK_WAIT_S": "2"}, services=("ledger",))
    nats_url, log = stack.info["nats"], tmp_path / "handled.log"
    key = [("authorization", f"Bearer {stack.info['api_key']}")]
    with grpc.insecure_channel(stack.info["ledger_addr"]) as channel:
        job = jobs_pb2_grpc.JobServiceStub(channel).CreateJob(jobs_pb2.CreateJobRequest(params=params_pb2.JobParams(
            v2a=params_pb2.V2AParams(training_data_url="https://example.com/d.zip"))), metadata=key)
    stack.processes["ledger"].terminate()
    stack.processes["ledger"].wait(timeout=40)

    for delivery in (1, 2):  # the worker dies on the item every time
        with running_worker(nats_url, tmp_path, log, 60) as worker:
            assert wait_for(lambda: len(handled(log)) == delivery, 30), f"delivery {delivery}"
            worker.send_signal(signal.SIGKILL)
            worker.wait()
    with running_worker(nats_url, tmp_path, log, 0.1):  # pulls, is never handed the item: the advisory fires
        assert wait_for(lambda: asyncio.run(stream_messages(nats_url, ADVISORY_STREAM)) == 1, 30)

    restart_ledger(stack)
    with grpc.insecure_channel(stack.info["ledger_addr"]) as channel:
        jobs = jobs_pb2_grpc.JobServiceStub(channel)
        get = lambda: jobs.GetJob(jobs_pb2.GetJobRequest(job_id=job.id), metadata=key)  # noqa: E731
        assert wait_for(lambda: get().state == jobs_pb2.FAILED, 30), get()
        failed = get()
    assert "internal error: ingest worker stopped 2 times on this job" in failed.error
    assert failed.billed_units == 0 and failed.cost == 0
    assert len(handled(log)) == 2
    assert asyncio.run(stream_messages(nats_url, bus.WORK_STREAM)) == 0
