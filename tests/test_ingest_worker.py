"""The real ingest worker process (`python -m services.ingest`) over a real nats-server: it runs
several jobs at once, so one tenant's slow download does not hold another tenant's job."""

import asyncio
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import nats
from media import write_clip, zip_files
from test_ingest_fetch import Handler, Server

from avlora import bus
from avlora.params import V2AParams, to_proto
from avlora.v1 import events_pb2

ROOT = Path(__file__).parent.parent


async def test_a_fast_job_completes_while_a_slow_download_is_still_running(nats_url, tmp_path):
    httpd = Server(("127.0.0.1", 0), Handler)
    httpd.files, httpd.hits = {}, {}
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    clip = write_clip(tmp_path / "walk.mp4", frames=9)
    httpd.files["data.zip"] = zip_files(tmp_path / "data.zip", {"walk.mp4": clip, "walk.txt": "steps"}).read_bytes()
    env = os.environ | {"AVLORA_NATS_URL": nats_url, "AVLORA_DATA_DIR": str(tmp_path / "state"),
                        "AVLORA_INGEST_CONCURRENCY": "2", "AVLORA_INGEST_ALLOW_NETWORKS": "127.0.0.0/8",
                        "AVLORA_INGEST_MIN_BYTES_PER_S": "1000", "AVLORA_INGEST_SLOW_WINDOW_S": "8",
                        "AVLORA_ACK_WAIT_S": "6", "AVLORA_INTERNAL_TOKEN": "test-token", "PYTHONPATH": str(ROOT)}
    worker = subprocess.Popen([sys.executable, "-m", "services.ingest"], env=env, cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        await bus.ensure_spine(js, ack_wait=6, max_deliver=4)
        events: list[events_pb2.JobEvent] = []

        async def record(message):
            events.append(events_pb2.JobEvent.FromString(message.data))
        await nc.subscribe("avlora.events.>", cb=record)
        for job_id, path in (("slow", "/drip"), ("fast", "/files/data.zip")):  # the slow one is taken first
            params = to_proto(V2AParams(training_data_url=base + path))
            await bus.publish_work(js, "ingest", events_pb2.StageWork(job_id=job_id, tenant=job_id, params=params))

        def seen(job_id: str, kind: str) -> bool:
            return any(event.job_id == job_id and event.WhichOneof("kind") == kind for event in events)

        fast_done_at, deadline = None, time.monotonic() + 60
        while not seen("slow", "failed") and time.monotonic() < deadline:
            handed_on = await js.consumer_info(bus.WORK_STREAM, bus.consumer_name("preprocess"))
            if fast_done_at is None and handed_on.num_pending == 1:  # only the fast job can get there
                fast_done_at = time.monotonic()
                assert not seen("slow", "failed") and httpd.hits.get("/drip") == 1, "the slow one still downloads"
            await asyncio.sleep(0.2)
        assert fast_done_at is not None, "the fast job was not ingested while the slow one downloaded"
        failure = next(event.failed for event in events if event.job_id == "slow" and event.WhichOneof("kind") == "failed")
        assert failure.reason.startswith("dataset download failed: too slow: ") and failure.reason.endswith(
            f"under the minimum of 1000 bytes/s for {base}/drip")
    finally:
        await nc.close()
        worker.terminate()
        worker.wait(timeout=20)
        httpd.shutdown()

