"""What operators see of a running stack: every process's Prometheus metrics (scraped from the
addresses in stack.json and parsed with prometheus_client's parser) and its JSON log lines, after a
job that succeeds and one that fails. One stack for the module: its trainer is stopped at first, so
that the queue of a stage without a consumer is seen growing, then started again."""

import json
import signal
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from avlora.demo_data import write_demo_dataset
from avlora.stack import Stack
from avlora.v1 import jobs_pb2, jobs_pb2_grpc

AVLORA = [sys.executable, "-m", "avlora.cli"]
SMALL = ["--resolution", "low", "--aspect-ratio", "16:9", "--number-of-frames", "17",
         "--validation-resolution", "low", "--validation-aspect-ratio", "16:9", "--validation-number-of-frames", "17"]
PROCESSES = ("ledger", "ingest", "preprocess", "trainer")


def cli(data_dir: Path, *args) -> str:
    result = subprocess.run([*AVLORA, "--data-dir", str(data_dir), *map(str, args)], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def scrape(address: str) -> dict[tuple[str, tuple], float]:
    """Every sample a process serves: (name, sorted labels) -> value."""
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(samples: dict, name: str, **labels) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def wait_until(condition, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.5)
    return result


@pytest.fixture(scope="module")
def ran(tmp_path_factory, tiny_model_dir):
    """The stack (JSON logs) after a v2a job that succeeded and one that failed; the two job ids and
    what the ledger showed while the trainer was away."""
    folder = tmp_path_factory.mktemp("observed")
    stack = Stack(folder / "stack", extra_env={"AVLORA_MODEL_DIR": str(tiny_model_dir), "AVLORA_ACK_WAIT_S": "6",
                                               "AVLORA_LOG_FORMAT": "json"})
    stack.start()
    try:
        data_dir, info = stack.data_dir, stack.info
        trainer = stack.processes["trainer"]
        trainer.send_signal(signal.SIGTERM)
        trainer.wait(timeout=60)
        good = write_demo_dataset("v2a", folder / "demo.zip", clips=2, frames=17, size=(96, 96))
        job_id = cli(data_dir, "submit", "v2a", good, "--steps", "100", *SMALL).strip()
        # No trainer: the job waits in the train queue, which the ledger's metrics show.
        waiting = wait_until(lambda: (lambda s: s if value(s, "avlora_queue_pending", stage="train") == 1 else None)(
            scrape(info["ledger_metrics_addr"])), timeout=300)
        stack._spawn("trainer")
        cli(data_dir, "watch", job_id)  # exit code 0: SUCCEEDED
        bad = folder / "bad.zip"
        with zipfile.ZipFile(bad, "w") as archive:
            archive.writestr("notes.txt", "no clips here")
        failed_id = cli(data_dir, "submit", "v2a", bad, "--steps", "100", *SMALL).strip()
        subprocess.run([*AVLORA, "--data-dir", str(data_dir), "watch", failed_id], capture_output=True, timeout=300)
        with grpc.insecure_channel(info["ledger_addr"]) as channel:  # a refused call is counted too
            with pytest.raises(grpc.RpcError):
                jobs_pb2_grpc.JobServiceStub(channel).GetJob(jobs_pb2.GetJobRequest(job_id=job_id),
                                                             metadata=[("authorization", "Bearer wrong")])
        yield stack, job_id, failed_id, waiting
    finally:
        stack.stop()


def test_every_process_serves_its_metrics_on_its_own_port(ran):
    stack, *_ = ran
    addresses = {label: stack.info[f"{label}_metrics_addr"] for label in PROCESSES}
    assert len(set(addresses.values())) == len(PROCESSES)
    check = "/grpc.health.v1.Health/Check"
    for label, address in addresses.items():
        before = value(scrape(address), "avlora_grpc_requests_total", method=check, code="OK") or 0
        with grpc.insecure_channel(stack.info[f"{label}_addr"]) as channel:
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert value(scrape(address), "avlora_grpc_requests_total", method=check, code="OK") == before + 1, label


def test_a_stage_without_a_consumer_shows_its_queue_growing(ran):
    *_, waiting = ran
    assert value(waiting, "avlora_queue_pending", stage="train") == 1
    assert value(waiting, "avlora_queue_in_progress", stage="train") == 0  # nobody holds it
    assert value(waiting, "avlora_jobs_not_ended", state="PREPROCESSING") == 1
    assert value(waiting, "avlora_job_unchanged_seconds", state="PREPROCESSING") > 0


def test_the_ledger_counts_jobs_bills_and_calls(ran):
    stack, job_id, failed_id, _ = ran
    ledger = scrape(stack.info["ledger_metrics_addr"])
    assert value(ledger, "avlora_jobs_created_total", mode="v2a") == 2
    assert value(ledger, "avlora_jobs_ended_total", mode="v2a", state="SUCCEEDED") == 1
    assert value(ledger, "avlora_jobs_ended_total", mode="v2a", state="FAILED") == 1
    usage = json.loads(cli(stack.data_dir, "usage", "--json"))
    assert usage["total_units"] == 100
    assert value(ledger, "avlora_billed_units_total", mode="v2a") == usage["total_units"]
    create = "/avlora.v1.JobService/CreateJob"
    assert value(ledger, "avlora_grpc_requests_total", method=create, code="OK") == 2
    assert value(ledger, "avlora_grpc_request_duration_seconds_count", method=create) == 2
    assert value(ledger, "avlora_grpc_requests_total", method="/avlora.v1.JobService/GetJob",
                 code="UNAUTHENTICATED") == 1
    # Each stage asked the ledger who uploaded the datasets (internal port, with the token).
    assert sum(v for (name, labels), v in ledger.items() if name == "avlora_grpc_requests_total"
               and dict(labels)["method"].startswith("/avlora.v1.LedgerService/")) >= 1
    # The backlog is read every few seconds: it empties once both jobs have ended.
    ledger = wait_until(lambda: (lambda s: s if value(s, "avlora_jobs_not_ended", state="TRAINING") == 0 else None)(
        scrape(stack.info["ledger_metrics_addr"])))
    for state in ("QUEUED", "INGESTING", "PREPROCESSING", "TRAINING"):
        assert value(ledger, "avlora_jobs_not_ended", state=state) == 0
        assert value(ledger, "avlora_job_unchanged_seconds", state=state) == 0
    for stage in ("ingest", "preprocess", "train"):
        assert value(ledger, "avlora_queue_pending", stage=stage) == 0
    assert value(ledger, "avlora_ledger_database_errors_total", kind="OperationalError") is None


def test_the_workers_time_each_stage(ran):
    stack, *_ = ran
    ingest = scrape(stack.info["ingest_metrics_addr"])
    assert value(ingest, "avlora_stage_duration_seconds_count", stage="ingest", mode="v2a", outcome="succeeded") == 1
    assert value(ingest, "avlora_stage_duration_seconds_count", stage="ingest", mode="v2a", outcome="failed") == 1
    assert value(ingest, "avlora_work_items_in_flight", stage="ingest") == 0
    preprocess = scrape(stack.info["preprocess_metrics_addr"])
    assert value(preprocess, "avlora_stage_duration_seconds_count", stage="preprocess", mode="v2a",
                 outcome="succeeded") == 1
    trainer = scrape(stack.info["trainer_metrics_addr"])
    assert value(trainer, "avlora_stage_duration_seconds_count", stage="train", mode="v2a", outcome="succeeded") == 1
    assert value(trainer, "avlora_stage_duration_seconds_sum", stage="train", mode="v2a", outcome="succeeded") > 0
    for samples, stage in ((ingest, "ingest"), (preprocess, "preprocess"), (trainer, "train")):
        assert value(samples, "avlora_work_redeliveries_total", stage=stage) is None  # no item came twice


def test_the_trainer_reports_its_speed(ran):
    stack, job_id, *_ = ran
    trainer = scrape(stack.info["trainer_metrics_addr"])
    steps = value(trainer, "avlora_train_steps_per_second", mode="v2a")
    assert steps > 0
    assert value(trainer, "avlora_train_seconds_per_step", mode="v2a") == pytest.approx(1 / steps)
    # Every clip of the job has the same shape: tokens per second / steps per second is the tokens
    # of one step. low 16:9 is 512x288; the tiny model's VAE, like LTX-2.3's, makes one latent frame
    # of 32x32 pixels per 8 frames (+1): 17 frames -> 3 x 9 x 16 video tokens; its audio latents
    # come at 25 per second (16 kHz, hop 160, 4x down): 17 frames at 24 fps -> 18 audio tokens.
    tokens = value(trainer, "avlora_train_tokens_per_second", mode="v2a") / steps
    assert tokens == pytest.approx(3 * 9 * 16 + 18, rel=1e-6)
    peak = value(trainer, "avlora_train_gpu_memory_peak_bytes")
    import torch
    assert peak > 0 if torch.cuda.is_available() else peak == 0  # the trainer takes a GPU when it sees one


def test_every_line_a_job_causes_is_json_naming_the_job(ran):
    stack, job_id, failed_id, _ = ran
    logs = Path(stack.info["logs"])
    seen = {}
    for label in PROCESSES:
        for line in (logs / f"{label}.log").read_text().splitlines():
            record = json.loads(line)  # every line of every process is JSON
            assert record["worker"] == label, line
            for job in (job_id, failed_id):
                if job in line:
                    assert record["job_id"] == job and record["tenant"] == "local" and record["stage"], line
                    seen.setdefault(label, []).append((record["job_id"], record["stage"], record["event"]))
    for label, stage in (("ingest", "ingest"), ("preprocess", "preprocess"), ("trainer", "train")):
        assert (job_id, stage, "stage started") in seen[label] and (job_id, stage, "stage ended") in seen[label]
    assert (failed_id, "ingest", "stage ended") in seen["ingest"]
    assert {(job, event) for job, _, event in seen["ledger"]} >= {(job_id, "job state"), (failed_id, "job state")}
    assert job_id not in (logs / "nats.log").read_text()
