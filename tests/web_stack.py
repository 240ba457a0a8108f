"""A real stack with the web page and two tenants' keys, for tests/test_web*.py."""

import secrets
import time

import grpc
import httpx
import pytest

from avlora.stack import Stack
from avlora.v1 import jobs_pb2, jobs_pb2_grpc

# The form's fields for a job that trains in about a minute on a CPU.
SMALL = {"number_of_steps": "100", "resolution": "low", "aspect_ratio": "16:9", "number_of_frames": "9",
         "validation_resolution": "low", "validation_number_of_frames": "9", "rank": "8"}


class Web:
    def __init__(self, stack: Stack, own: str, other: str):
        self.stack, self.own, self.other = stack, own, other
        self.url = stack.info["web_url"]
        self.channel = grpc.insecure_channel(stack.info["ledger_addr"])
        self.jobs = jobs_pb2_grpc.JobServiceStub(self.channel)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, follow_redirects=False, trust_env=False, timeout=60)

    def login(self, key: str) -> httpx.Client:
        client = self.client()
        client.get("/login")
        reply = client.post("/login", data={"csrf": client.cookies["avlora_csrf"], "api_key": key})
        assert reply.status_code == 303 and reply.headers["location"] == "/jobs", reply.text
        return client

    def job(self, job_id: str, key: str) -> jobs_pb2.Job:
        return self.jobs.GetJob(jobs_pb2.GetJobRequest(job_id=job_id), metadata=bearer(key), timeout=30)

    def wait_ended(self, job_id: str, key: str, timeout: float = 600) -> jobs_pb2.Job:
        deadline = time.monotonic() + timeout
        while (job := self.job(job_id, key)).state not in (jobs_pb2.SUCCEEDED, jobs_pb2.FAILED, jobs_pb2.CANCELLED):
            assert time.monotonic() < deadline, job
            time.sleep(0.5)
        return job


def bearer(key: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {key}")]


@pytest.fixture(scope="module")
def web(tmp_path_factory, tiny_model_dir):
    own, other = "avl_own_" + secrets.token_urlsafe(16), "avl_other_" + secrets.token_urlsafe(16)
    stack = Stack(tmp_path_factory.mktemp("web") / "stack", extra_env={
        "AVLORA_MODEL_DIR": str(tiny_model_dir), "AVLORA_ACK_WAIT_S": "4",
        "AVLORA_LEDGER_KEYS": f"local:{own},other:{other}",
        "AVLORA_INGEST_ALLOW_NETWORKS": "127.0.0.0/8"})  # loopback webhook receivers
    stack.start()
    yield Web(stack, own, other)
    stack.stop()
