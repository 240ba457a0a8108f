"""Webhooks through a real stack (nats-server, the ledger, the three stages; SQLite, and PostgreSQL
with DATABASE_URL) and a real HTTP receiver on loopback that refuses the first delivery, is down
for a while (the ledger restarted meanwhile), and comes back: every state change arrives, each
signature checks with the standardwebhooks library, and every attempt is on record."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from google.protobuf import json_format
from standardwebhooks import Webhook

from avlora.client import Endpoints
from avlora.demo_data import write_demo_dataset
from avlora.stack import free_port, wait_healthy
from avlora.v1 import jobs_pb2, params_pb2

STATES = ["QUEUED", "INGESTING", "PREPROCESSING", "TRAINING", "SUCCEEDED"]


class Receiver:
    """An HTTP server on loopback that records every POST; it answers 503 to the first `refuse`
    of them and 204 to the rest, and can be stopped and started again on the same port."""

    def __init__(self, refuse: int):
        self.port, self.refuse, self.received, self.server = free_port(), refuse, [], None
        self.lock = threading.Lock()

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["content-length"]))
                with receiver.lock:
                    receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                    refused = receiver.refuse > 0
                    receiver.refuse -= refused
                self.send_response(503 if refused else 204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_every_state_change_reaches_a_receiver_that_refuses_is_down_and_comes_back(make_stack, database_url,
                                                                                     tmp_path):
    stack = make_stack({"AVLORA_DATABASE_URL": database_url, "AVLORA_WEBHOOK_RETRY_BASE_S": "2",
                        "AVLORA_WEBHOOK_MAX_RETRY_WAIT_S": "4"}, name="webhooks")
    endpoints = Endpoints(api=stack.info["ledger_addr"], api_key=stack.info["api_key"],
                          ingest=stack.info["ingest_addr"], preprocess=stack.info["preprocess_addr"])
    jobs, auth = endpoints.jobs(), endpoints.auth
    secret = jobs.GetWebhookSecret(jobs_pb2.WebhookSecretRequest(), metadata=auth).secret
    receiver = Receiver(refuse=1)
    receiver.start()
    dataset = endpoints.upload(write_demo_dataset("v2a", tmp_path / "v2a.zip", clips=2, frames=17, size=(64, 64)))
    job = jobs.CreateJob(jobs_pb2.CreateJobRequest(
        webhook_url=f"http://127.0.0.1:{receiver.port}/hooks?from=avlora",
        params=params_pb2.JobParams(v2a=params_pb2.V2AParams(
            training_data_url=dataset, number_of_steps=100, resolution="low", aspect_ratio="16:9",
            number_of_frames=17))), metadata=auth, timeout=60)

    def deliveries():
        return jobs.ListWebhookDeliveries(jobs_pb2.GetJobRequest(job_id=job.id), metadata=auth, timeout=30).deliveries

    wait_for(lambda: receiver.received, 60, "the first delivery")
    receiver.stop()  # down before the first retry (2 s later): attempts fail to connect
    wait_for(lambda: any(len(d.attempts) >= 2 for d in deliveries()), 60, "a failed retry")
    ledger = stack.processes["ledger"]
    ledger.terminate()  # the ledger restarts while deliveries wait for their next attempt
    ledger.wait(timeout=60)
    restarted = time.time()
    stack._spawn("ledger")
    wait_healthy(stack.info["ledger_addr"], 120, stack.processes["ledger"], "ledger")
    wait_for(lambda: any(a.at.seconds > restarted for d in deliveries() for a in d.attempts), 60,
             "an attempt after the restart")
    receiver.start()  # back

    def all_delivered():
        found = list(deliveries())
        return len(found) == len(STATES) and all(d.status == "delivered" for d in found) and found
    final = wait_for(all_delivered, 300, "every delivery")
    assert all(d.attempts for d in final)  # each delivered message with its attempts

    shown = jobs.GetJob(jobs_pb2.GetJobRequest(job_id=job.id), metadata=auth)
    assert shown.state == jobs_pb2.SUCCEEDED
    assert [jobs_pb2.JobState.Name(d.state) for d in final] == STATES
    assert [d.message_id for d in final] == [f"msg_{job.id}_{state.lower()}" for state in STATES]
    assert [d.type for d in final] == [f"job.{state.lower()}" for state in STATES]
    refused = [d for d in final if d.attempts[0].status_code == 503]
    assert len(refused) == 1  # the first one to arrive (deliveries due together go out together)
    first = refused[0].attempts
    assert first[0].error == "HTTP 503"
    assert any(a.status_code == 0 and a.error.startswith("connection error") for a in first)
    assert any(a.at.seconds > restarted for a in first)  # retried after the ledger's restart
    assert (first[-1].status_code, first[-1].error) == (204, "")
    assert all(d.attempts[-1].status_code == 204 for d in final)

    by_id: dict[str, set[bytes]] = {}
    for headers, body in receiver.received:
        payload = Webhook(secret).verify(body, headers)  # raises unless the signature is the tenant's
        assert payload["data"]["id"] == job.id and headers["content-type"] == "application/json"
        assert payload == json.loads(body)
        by_id.setdefault(headers["webhook-id"], set()).add(body)
    assert set(by_id) == {d.message_id for d in final}
    assert all(len(bodies) == 1 for bodies in by_id.values())  # every attempt of a message: the same body
    payloads = {json.loads(next(iter(by_id[d.message_id])))["type"]: d for d in final}
    assert set(payloads) == {f"job.{state.lower()}" for state in STATES}
    last = json.loads(next(iter(by_id[final[-1].message_id])))
    announced = json_format.ParseDict(last["data"], jobs_pb2.Job())
    expected = jobs_pb2.Job()
    expected.CopyFrom(shown)
    expected.ClearField("download_urls")
    expected.ClearField("download_urls_expire_at")
    assert announced == expected  # the job as GetJob returns it
    assert announced.billed_units == 100 and announced.outputs.lora_file
    for state in STATES[:-1]:
        data = json.loads(next(iter(by_id[f"msg_{job.id}_{state.lower()}"])))["data"]
        assert data["state"] == state
