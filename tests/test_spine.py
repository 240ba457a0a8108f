"""The NATS spine with real processes: a fleet shares one queue, a killed worker loses nothing."""

import asyncio
import os
import signal
import subprocess
import sys
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

import nats
import pytest

from avlora import bus
from avlora.params import from_proto, to_proto
from avlora.v1 import events_pb2, params_pb2

WORKER = Path(__file__).parent / "spine_worker.py"


@contextmanager
def running_worker(nats_url, tmp_path, log, seconds, ack_wait=2, max_deliver=4):
    """A worker process for the duration of the block (terminated after, unless already dead)."""
    worker = start_worker(nats_url, tmp_path, log, seconds, ack_wait, max_deliver)
    try:
        yield worker
    finally:
        if worker.poll() is None:
            worker.terminate()
            worker.wait(timeout=20)


def start_worker(nats_url, tmp_path, log, seconds, ack_wait=2, max_deliver=4):
    env = os.environ | {"AVLORA_NATS_URL": nats_url, "AVLORA_DATA_DIR": str(tmp_path), "AVLORA_ACK_WAIT_S": str(ack_wait),
                        "AVLORA_MAX_DELIVER": str(max_deliver),
                        "SPINE_LOG": str(log), "SPINE_SECONDS": str(seconds),
                        "PYTHONPATH": str(Path(__file__).parent.parent)}
    return subprocess.Popen([sys.executable, str(WORKER)], env=env, stderr=subprocess.DEVNULL)


async def queue_jobs(nats_url, count, ack_wait=2) -> list[str]:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await bus.ensure_spine(js, ack_wait=ack_wait, max_deliver=4)
    params = to_proto(from_proto(params_pb2.JobParams(v2a=params_pb2.V2AParams(training_data_url="https://e.com/d.zip"))))
    ids = [f"job{index:03d}" for index in range(count)]
    for job_id in ids:
        await bus.publish_work(js, "ingest", events_pb2.StageWork(job_id=job_id, tenant="t", params=params))
    await bus.publish_work(js, "ingest", events_pb2.StageWork(job_id=ids[0], tenant="t", params=params))  # duplicate
    await nc.close()
    return ids


async def queued(nats_url, stage) -> list[str]:
    """Job ids waiting in a stage's queue (what the workers published downstream)."""
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    info = await js.consumer_info(bus.WORK_STREAM, bus.consumer_name(stage))
    subscription = await js.pull_subscribe_bind(durable=bus.consumer_name(stage), stream=bus.WORK_STREAM)
    ids = []
    if info.num_pending:
        for message in await subscription.fetch(info.num_pending, timeout=5):
            ids.append(events_pb2.StageWork.FromString(message.data).job_id)
    await nc.close()
    return ids


def handled(log: Path) -> list[list[str]]:
    return [line.split() for line in log.read_text().splitlines()] if log.exists() else []


def wait_for(condition, timeout):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


async def test_two_workers_share_a_queue_and_handle_each_job_once(nats_url, tmp_path):
    log = tmp_path / "handled.log"
    with ExitStack() as workers:
        for _ in range(2):
            workers.enter_context(running_worker(nats_url, tmp_path, log, 0.3))
        ids = await queue_jobs(nats_url, 12)
        assert await asyncio.to_thread(wait_for, lambda: len(handled(log)) >= 12, 60)
        await asyncio.sleep(1.5)  # anything handled twice would show up by now
        lines = handled(log)
        assert sorted(job for job, _, _ in lines) == sorted(ids), "each job handled exactly once"
        assert len({pid for _, pid, _ in lines}) == 2, "both workers of the fleet took work"
        assert sorted(await queued(nats_url, "preprocess")) == sorted(ids), "each passed on to the next stage once"


async def test_a_worker_killed_mid_message_loses_nothing(nats_url, tmp_path):
    log = tmp_path / "handled.log"
    with running_worker(nats_url, tmp_path, log, 60) as doomed:
        [job_id] = (await queue_jobs(nats_url, 1))[:1]
        assert await asyncio.to_thread(wait_for, lambda: len(handled(log)) == 1, 30)
        doomed.send_signal(signal.SIGKILL)
        doomed.wait()
    with running_worker(nats_url, tmp_path, log, 0.1):
        assert await asyncio.to_thread(wait_for, lambda: len(handled(log)) == 2, 30), "message redelivered"
        first, second = handled(log)
        assert first[0] == second[0] == job_id
        assert first[1] != second[1] and second[2] == "2", "another worker, second delivery"
        await asyncio.sleep(3)  # past ack_wait: had the second delivery not been acked, a third would come
        assert len(handled(log)) == 2
        assert await queued(nats_url, "preprocess") == [job_id]


async def test_graceful_shutdown_releases_unfinished_work(nats_url, tmp_path):
    log = tmp_path / "handled.log"
    # ack_wait 30 s: the grace period is 10 s, a redelivery by timeout would take 30 s.
    with running_worker(nats_url, tmp_path, log, 60, ack_wait=30) as slow:
        await queue_jobs(nats_url, 1, ack_wait=30)
        assert await asyncio.to_thread(wait_for, lambda: len(handled(log)) == 1, 30)
        slow.send_signal(signal.SIGTERM)
        stopped_at = time.monotonic()
        with running_worker(nats_url, tmp_path, log, 0.1, ack_wait=30):
            assert await asyncio.to_thread(wait_for, lambda: len(handled(log)) == 2, 28)
            assert time.monotonic() - stopped_at < 25, "released by the stopping worker, not by ack_wait"
            assert slow.wait(timeout=40) is not None


async def test_a_malformed_work_item_is_dropped_and_the_worker_goes_on(nats_url, tmp_path):
    log = tmp_path / "handled.log"
    with running_worker(nats_url, tmp_path, log, 0.1) as worker:
        nc = await nats.connect(nats_url)
        js = nc.jetstream()
        await bus.ensure_spine(js, ack_wait=2, max_deliver=4)
        await js.publish(bus.work_subject("ingest"), b"\xff not a protobuf")
        await nc.close()
        [job_id] = await queue_jobs(nats_url, 1)
        assert await asyncio.to_thread(wait_for, lambda: len(handled(log)) == 1, 30)
        assert handled(log)[0][0] == job_id and worker.poll() is None


@pytest.mark.parametrize("job_id, max_deliver, reason", [
    ("bad1", 4, "bad1.mp4 has no audio track"),
    # An internal error on the last delivery fails the job; its text, control characters escaped.
    ("crash1", 1, "internal error in ingest: cannot decode crash1\\x1b[31m.mp4\\x0d\\x0aforged line"),
])
async def test_a_failed_stage_fails_the_job_once_and_leaves_nothing_queued(nats_url, tmp_path, job_id, max_deliver,
                                                                          reason):
    with running_worker(nats_url, tmp_path, tmp_path / "handled.log", 0.1, max_deliver=max_deliver):
        nc = await nats.connect(nats_url)
        js = nc.jetstream()
        await bus.ensure_spine(js, ack_wait=2, max_deliver=4)
        events = await js.pull_subscribe(f"avlora.events.{job_id}", durable="test-events", stream=bus.EVENT_STREAM)
        params = to_proto(from_proto(params_pb2.JobParams(v2a=params_pb2.V2AParams(training_data_url="https://e.com/d.zip"))))
        await bus.publish_work(js, "ingest", events_pb2.StageWork(job_id=job_id, tenant="t", params=params))
        seen = []
        deadline = time.monotonic() + 30
        while not any(e.WhichOneof("kind") == "failed" for e in seen) and time.monotonic() < deadline:
            try:
                seen += [events_pb2.JobEvent.FromString(m.data) for m in await events.fetch(10, timeout=1)]
            except (asyncio.TimeoutError, TimeoutError):
                pass
        [failed] = [e for e in seen if e.WhichOneof("kind") == "failed"]
        assert failed.failed.reason == reason and failed.failed.stage == "ingest"
        await asyncio.sleep(3)  # past ack_wait: a message left unsettled would be redelivered by now
        started = [e for e in seen if e.WhichOneof("kind") == "started"]
        try:
            started += [e for m in await events.fetch(10, timeout=1)
                        if (e := events_pb2.JobEvent.FromString(m.data)).WhichOneof("kind") == "started"]
        except (asyncio.TimeoutError, TimeoutError):
            pass
        assert len(started) == 1, "not retried"
        assert (await js.stream_info(bus.WORK_STREAM)).state.messages == 0
        await nc.close()


def test_a_job_whose_worker_dies_every_time_fails_instead_of_staying_stuck(make_stack, tmp_path):
    """After max_deliver deliveries without an ack, the ledger fails the job (billed 0) and drops the item."""
    import grpc

    from avlora.v1 import jobs_pb2, jobs_pb2_grpc
    env = {"AVLORA_MAX_DELIVER": "2", "AVLORA_ACK_WAIT_S": "2"}
    stack = make_stack(extra_env=env, services=("ledger",))
    nats_url, log = stack.info["nats"], tmp_path / "handled.log"
    key = [("authorization", f"Bearer {stack.info['api_key']}")]
    with grpc.insecure_channel(stack.info["ledger_addr"]) as channel:
        jobs = jobs_pb2_grpc.JobServiceStub(channel)
        job = jobs.CreateJob(jobs_pb2.CreateJobRequest(params=params_pb2.JobParams(
            v2a=params_pb2.V2AParams(training_data_url="https://example.com/d.zip"))), metadata=key)
        for delivery in (1, 2):
            with running_worker(nats_url, tmp_path, log, 60) as worker:
                assert wait_for(lambda: len(handled(log)) == delivery, 30), f"delivery {delivery}"
                worker.send_signal(signal.SIGKILL)
                worker.wait()
        with running_worker(nats_url, tmp_path, log, 0.1):  # pulls, but is never handed the item again
            assert wait_for(lambda: jobs.GetJob(jobs_pb2.GetJobRequest(job_id=job.id), metadata=key).state
                            == jobs_pb2.FAILED, 30)
        failed = jobs.GetJob(jobs_pb2.GetJobRequest(job_id=job.id), metadata=key)
        assert "internal error: ingest worker stopped" in failed.error and failed.billed_units == 0
    assert len(handled(log)) == 2

    async def queue_is_empty():
        nc = await nats.connect(nats_url)
        info = await nc.jetstream().stream_info(bus.WORK_STREAM)
        await nc.close()
        return info.state.messages == 0
    assert asyncio.run(queue_is_empty())
