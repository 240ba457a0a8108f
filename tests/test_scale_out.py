"""Scale-out on one machine: the stack as separate processes with two workers per fleet, each with
its own scratch dir, sharing only NATS, the ledger database (PostgreSQL when DATABASE_URL is set,
else SQLite) and a real S3 server (SeaweedFS). Four jobs of both modes at once finish and are billed
exactly once, with one worker of each fleet SIGKILLed mid-job: none lost, none billed twice, every
output downloadable through the RPC. (This is the suite's one kill-every-fleet scenario; a trainer's
resume from its checkpoint is tests/test_trainer_resume_stack.py, the supervisor's restart
tests/test_supervisor.py.)"""

import os
import signal
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from avlora.client import Endpoints
from avlora.demo_data import write_demo_dataset
from avlora.store_s3 import S3Store
from avlora.v1 import jobs_pb2, params_pb2
from s3_server import s3_server  # noqa: F401  (fixture)

TERMINAL = {jobs_pb2.SUCCEEDED, jobs_pb2.FAILED, jobs_pb2.CANCELLED}
STAGE_STATE = {"ingest": jobs_pb2.INGESTING, "preprocess": jobs_pb2.PREPROCESSING, "trainer": jobs_pb2.TRAINING}


@pytest.fixture
def ledger_database():
    """A fresh PostgreSQL database when DATABASE_URL is set; else the stack's own SQLite file."""
    base = os.environ.get("DATABASE_URL")
    if not base:
        yield {}
        return
    import psycopg
    name = f"avlora_scale_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(base, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    yield {"AVLORA_DATABASE_URL": base.rsplit("/", 1)[0] + "/" + name}
    with psycopg.connect(base, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def job_params(mode: str, dataset: str) -> params_pb2.JobParams:
    common = dict(training_data_url=dataset, number_of_steps=100, resolution="low", aspect_ratio="16:9",
                  number_of_frames=9)
    if mode == "v2a":
        return params_pb2.JobParams(v2a=params_pb2.V2AParams(**common))
    return params_pb2.JobParams(av2av=params_pb2.AV2AVParams(**common))


def submit_four(endpoints: Endpoints, datasets: dict[str, str], batch: str) -> list[str]:
    modes = ["v2a", "av2av"] * 2

    def create(index: int) -> str:
        request = jobs_pb2.CreateJobRequest(params=job_params(modes[index], datasets[modes[index]]),
                                            request_id=f"{batch}-{index}")
        return endpoints.jobs().CreateJob(request, metadata=endpoints.auth, timeout=60).id

    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(create, range(4)))


def jobs_now(endpoints: Endpoints, job_ids: list[str]) -> dict[str, jobs_pb2.Job]:
    return {job_id: endpoints.jobs().GetJob(jobs_pb2.GetJobRequest(job_id=job_id), metadata=endpoints.auth,
                                            timeout=30) for job_id in job_ids}


def wait_all_ended(endpoints, job_ids, timeout=900, on_poll=None) -> dict[str, jobs_pb2.Job]:
    deadline = time.monotonic() + timeout
    while True:
        jobs = jobs_now(endpoints, job_ids)
        if all(job.state in TERMINAL for job in jobs.values()):
            return jobs
        if on_poll:
            on_poll(jobs)
        assert time.monotonic() < deadline, {j: jobs_pb2.JobState.Name(job.state) for j, job in jobs.items()}
        time.sleep(1)


def check_finished_once(endpoints, jobs: dict[str, jobs_pb2.Job], store: S3Store) -> None:
    assert {job_id: jobs_pb2.JobState.Name(job.state) for job_id, job in jobs.items()} == \
           {job_id: "SUCCEEDED" for job_id in jobs}, {j: job.error for j, job in jobs.items()}
    usage = endpoints.jobs().GetUsage(jobs_pb2.GetUsageRequest(), metadata=endpoints.auth, timeout=30)
    lines = [line for line in usage.lines if line.job_id in jobs]
    assert sorted(line.job_id for line in lines) == sorted(jobs)  # one bill per job
    assert all(line.units == 100 for line in lines)  # 100 steps each
    for job_id, job in jobs.items():
        chunks = endpoints.jobs().DownloadArtifact(jobs_pb2.DownloadArtifactRequest(
            job_id=job_id, name="lora_file"), metadata=endpoints.auth, timeout=60)
        assert b"".join(chunk.data for chunk in chunks) == store.read_bytes(job.outputs.lora_file)


@pytest.mark.timeout(1200)  # four training jobs on a 2-core machine
def test_two_workers_per_fleet_share_only_nats_the_database_and_s3(make_stack, s3_server, ledger_database,
                                                                   tmp_path):
    started = time.monotonic()
    prefix = f"scale-{uuid.uuid4().hex[:8]}"
    env = s3_server.env | ledger_database | {"AVLORA_STORE_URL": f"s3://{s3_server.bucket}/{prefix}",
                                             "AVLORA_ACK_WAIT_S": "4", "AVLORA_MAX_DELIVER": "6"}
    stack = make_stack(env, workers={"ingest": 2, "preprocess": 2, "trainer": 2})
    store = S3Store(s3_server.bucket, prefix, client=s3_server.client())
    endpoints = Endpoints(api=stack.info["ledger_addr"], api_key=stack.info["api_key"],
                          ingest=stack.info["ingest_addr"], preprocess=stack.info["preprocess_addr"])
    zips = {mode: write_demo_dataset(mode, tmp_path / f"{mode}.zip", clips=2, frames=17, size=(64, 64))
            for mode in ("v2a", "av2av")}
    # an upload is an input of the jobs that name it: retention deletes it once they end
    uploads = {mode: endpoints.upload(path) for mode, path in zips.items()}

    killed: dict[str, int] = {}

    def kill_mid_job(jobs):  # one worker of each fleet, while its fleet has jobs in hand
        for fleet, state in STAGE_STATE.items():
            if fleet not in killed and sum(job.state == state for job in jobs.values()) >= 2:
                process = stack.processes[f"{fleet}-1"]
                process.send_signal(signal.SIGKILL)
                killed[fleet] = process.wait(timeout=10)

    ended = wait_all_ended(endpoints, submit_four(endpoints, uploads, "four"), on_poll=kill_mid_job)
    assert set(killed) == {"ingest", "preprocess", "trainer"} and set(killed.values()) == {-signal.SIGKILL}
    check_finished_once(endpoints, ended, store)
    assert not (stack.data_dir / "store").exists()  # nothing on a shared disk: all in S3
    # each worker used only its own scratch dir, and cleaned it up
    scratch = {p.name: list(p.iterdir()) for p in (stack.data_dir / "scratch").iterdir()}
    assert len(scratch) >= 3 and set(scratch) <= set(stack.addresses), scratch
    print(f"\nscale-out: 4 jobs (2 v2a, 2 av2av) on 2 workers per fleet, one of each fleet SIGKILLed: "
          f"{time.monotonic() - started:.0f} s", flush=True)
