"""The ledger's webhook outbox on its database (SQLite, and PostgreSQL with DATABASE_URL): which
state changes make a message, the retry schedule, and giving up after the retry window against a
real loopback receiver that always fails."""

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook

from avlora.netguard import parse_networks
from avlora.params import from_proto
from avlora.stage import new_event
from avlora.v1 import events_pb2, params_pb2
from services.ledger.webhooks import WebhookOptions, deliver_webhooks

LOOPBACK = parse_networks("127.0.0.0/8")


def params():
    return from_proto(params_pb2.JobParams(v2a=params_pb2.V2AParams(training_data_url="https://e.com/d.zip")))


def test_retries_double_from_the_base_up_to_the_longest_wait_for_a_day():
    options = WebhookOptions()
    assert [options.wait_after(n) for n in range(1, 8)] == [5, 10, 20, 40, 80, 160, 320]
    assert options.wait_after(12) == options.wait_after(40) == 3600
    assert options.retry_window_s >= 24 * 3600
    small = WebhookOptions(retry_base_s=0.1, max_retry_wait_s=0.3)
    assert [small.wait_after(n) for n in range(1, 5)] == [0.1, 0.2, 0.3, 0.3]


async def test_each_state_change_of_a_job_with_a_webhook_is_one_message(ledger):
    await ledger.add_api_key("acme")
    job, _ = await ledger.create_job("acme", params(), "", webhook_url="https://hooks.example.com/a")
    plain, _ = await ledger.create_job("acme", params(), "")
    for job_id in (job.id, plain.id):
        started = events_pb2.StageStarted(stage="ingest", attempt=1)
        await ledger.apply_event(new_event(job_id, f"{job_id}:ingest:started:1", started=started))
        await ledger.apply_event(new_event(job_id, f"{job_id}:ingest:started:2", started=started))  # a redelivery
        await ledger.cancel_job("acme", job_id)
    assert await ledger.webhook_deliveries(plain.id) == []
    deliveries = [delivery for delivery, _ in await ledger.webhook_deliveries(job.id)]
    assert [(d.message_id, d.type, d.status) for d in deliveries] == [
        (f"msg_{job.id}_queued", "job.queued", "pending"), (f"msg_{job.id}_ingesting", "job.ingesting", "pending"),
        (f"msg_{job.id}_cancelled", "job.cancelled", "pending")]
    body = json.loads(deliveries[-1].payload)
    assert body["type"] == "job.cancelled" and body["data"]["state"] == "CANCELLED"
    assert body["data"]["id"] == job.id and body["data"]["webhook_url"] == "https://hooks.example.com/a"


class Failing:
    """A receiver answering 500 to everything, recording what it got."""

    def __init__(self):
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                received.append(({k.lower(): v for k, v in self.headers.items()},
                                 self.rfile.read(int(self.headers["content-length"]))))
                self.send_response(500)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


async def test_a_message_is_given_up_after_the_retry_window(ledger):
    receiver = Failing()
    try:
        await ledger.add_api_key("acme")
        secret = await ledger.webhook_secret("acme")
        job, _ = await ledger.create_job("acme", params(), "", webhook_url=receiver.url)
        stopping = asyncio.Event()
        options = WebhookOptions(retry_base_s=0.1, max_retry_wait_s=0.2, retry_window_s=1.0)
        task = asyncio.create_task(deliver_webhooks(ledger, options, stopping, LOOPBACK))
        for _ in range(200):
            (delivery, attempts), = await ledger.webhook_deliveries(job.id)
            if delivery.status != "pending":
                break
            await asyncio.sleep(0.1)
        stopping.set()
        await task
    finally:
        receiver.close()
    assert delivery.status == "failed" and delivery.next_attempt_at is None
    assert len(attempts) == delivery.attempts >= 3
    assert all((a.status_code, a.error) == (500, "HTTP 500") for a in attempts)
    assert len(receiver.received) == len(attempts)
    for headers, body in receiver.received:
        assert headers["webhook-id"] == f"msg_{job.id}_queued"
        assert Webhook(secret).verify(body, headers)["type"] == "job.queued"
