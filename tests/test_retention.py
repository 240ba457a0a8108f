"""Retention on a real ledger database and a real store (local dir and SeaweedFS S3): inputs go when
a job ends, outputs after AVLORA_RETENTION_DAYS, and `avlora gc` reports and reclaims the rest."""

import asyncio
import os
import sqlite3
import subprocess
import sys
import time


from avlora.stage import new_event
from avlora.params import from_proto
from services.ledger.retention import Plan, StoreListing, collect, job_end_callback, without_uploads_in_use
from avlora.stack import Stack
from avlora.store import JobFiles, LocalStore
from avlora.v1 import events_pb2, jobs_pb2, params_pb2
from services.ledger.db import make_engine, migrate
from services.ledger.ledger import Ledger


def params(dataset: str):
    return from_proto(params_pb2.JobParams(v2a=params_pb2.V2AParams(training_data_url=dataset, number_of_steps=100)))


def write_job_files(store, job_id: str) -> JobFiles:
    files = JobFiles(job_id)
    store.write_bytes(files.dataset_zip, b"z" * 1000)
    store.write_bytes(files.extracted("a.mp4"), b"a" * 500)
    store.write_bytes(files.cached("latents", "a.pt"), b"l" * 300)
    store.write_bytes(files.debug_dataset, b"d" * 200)  # an output although under preprocess/
    store.write_bytes(files.checkpoint, b"c" * 700)
    store.write_bytes(files.output("lora.safetensors"), b"w" * 100)
    return files


async def run_to_success(ledger, job_id: str, files: JobFiles):
    for stage in ("ingest", "preprocess", "train"):
        await ledger.apply_event(new_event(job_id, f"{job_id}:{stage}:started",
                                           started=events_pb2.StageStarted(stage=stage, attempt=1)))
    applied = await ledger.apply_event(succeeded(job_id, files))
    assert applied.applied, applied.note


def succeeded(job_id: str, files: JobFiles):
    return new_event(job_id, f"{job_id}:succeeded", succeeded=events_pb2.JobSucceeded(
        outputs=jobs_pb2.Outputs(lora_file=f"store://{files.output('lora.safetensors')}",
                                 debug_dataset=f"store://{files.debug_dataset}"), steps_completed=100))


async def test_inputs_go_when_a_job_ends_and_outputs_after_the_retention_period(ledger, tmp_path):
    store = LocalStore(tmp_path / "store")
    ledger.on_job_end.append(job_end_callback(ledger, store))
    await ledger.add_api_key("acme")
    store.write_bytes("uploads/shared", b"u" * 50)
    store.write_bytes("uploads/own", b"o" * 60)
    store.write_bytes("uploads/stray", b"s" * 70)
    for upload_id, size in (("shared", 50), ("own", 60)):  # as the ingest service records them
        await ledger.record_upload(upload_id, "acme", size)
    first, _ = await ledger.create_job("acme", params("upload://own"), "")
    second, _ = await ledger.create_job("acme", params("upload://shared"), "")
    third, _ = await ledger.create_job("acme", params("upload://shared"), "")
    files = {job.id: write_job_files(store, job.id) for job in (first, second, third)}

    await run_to_success(ledger, first.id, files[first.id])
    assert store.list(files[first.id].root) == sorted([
        files[first.id].debug_dataset, files[first.id].checkpoint, files[first.id].output("lora.safetensors")])
    assert not store.exists("uploads/own")

    await ledger.cancel_job("acme", second.id)  # the upload is still named by the third job: kept
    assert store.list(files[second.id].stage_dir("ingest")) == [] and store.exists("uploads/shared")
    await ledger.apply_event(new_event(third.id, f"{third.id}:failed",
                                           failed=events_pb2.StageFailed(stage="ingest", reason="bad zip")))
    assert not store.exists("uploads/shared")

    # a stage that wrote after its job ended, and an old stray upload: gc catches both
    store.write_bytes(files[second.id].cached("latents", "late.pt"), b"x" * 40)
    listing = StoreListing.of(store)
    jobs = await ledger.jobs_for_retention(set(listing.job_files), listing.upload_ids)
    plan = collect(listing, jobs, days=30)
    assert [(key, size) for key, size, _ in plan.items] == [(files[second.id].cached("latents", "late.pt"), 40)]
    os.utime(store.path("uploads/stray"), (time.time() - 31 * 86400,) * 2)
    assert ("uploads/stray", 70, "upload unused for the retention period") in collect(
        StoreListing.of(store), jobs, days=30).items

    everything = collect(StoreListing.of(store), jobs, days=0)  # past the retention period: outputs and checkpoints too
    assert everything.total_bytes == store.usage("jobs") + 70
    everything.apply(store)
    assert store.list("jobs") == [] and store.list("uploads") == []


async def test_retention_reads_only_the_jobs_the_store_concerns(ledger, tmp_path):
    store = LocalStore(tmp_path / "store")
    await ledger.add_api_key("acme")
    await ledger.record_upload("kept", "acme", 10)
    with_files, _ = await ledger.create_job("acme", params("https://e.com/a.zip"), "")
    naming, _ = await ledger.create_job("acme", params("upload://kept"), "")
    await ledger.create_job("acme", params("https://e.com/c.zip"), "")  # neither: not read
    write_job_files(store, with_files.id)
    store.write_bytes("uploads/kept", b"k" * 10)
    listing = StoreListing.of(store)
    rows = await ledger.jobs_for_retention(set(listing.job_files), listing.upload_ids)
    assert sorted(row.id for row in rows) == sorted([with_files.id, naming.id])


async def test_an_upload_a_job_names_by_now_is_taken_out_of_the_plan(ledger, tmp_path):
    """The jobs are read before the store is judged; a job created meanwhile may name an upload
    the plan would delete: the plan is checked against the ledger again just before."""
    await ledger.add_api_key("acme")
    for upload_id in ("named", "free"):
        await ledger.record_upload(upload_id, "acme", 10)
    plan = Plan([("uploads/named", 10, "upload unused for the retention period"),
                 ("uploads/free", 10, "upload unused for the retention period"),
                 ("jobs/old/outputs/lora.safetensors", 5, "job ended more than the retention period ago")])
    await ledger.create_job("acme", params("upload://named"), "")
    kept = await without_uploads_in_use(ledger, plan)
    assert [key for key, _, _ in kept.items] == ["uploads/free", "jobs/old/outputs/lora.safetensors"]


def ended_job(data_dir) -> str:
    """A job that succeeded, recorded in the SQLite ledger of `data_dir` (as `avlora up` keeps it)."""
    async def record() -> str:
        engine = make_engine(f"sqlite:///{data_dir / 'ledger.db'}")
        await migrate(engine)
        ledger = Ledger(engine)
        await ledger.add_api_key("acme")
        job, _ = await ledger.create_job("acme", params("https://e.com/d.zip"), "")
        await run_to_success(ledger, job.id, JobFiles(job.id))
        await engine.dispose()
        return job.id
    return asyncio.run(record())


def test_gc_command_reports_then_reclaims(tmp_path):
    data_dir = tmp_path / "state"
    data_dir.mkdir()
    job_id = ended_job(data_dir)
    store = LocalStore(data_dir / "store")
    write_job_files(store, job_id)
    env = os.environ | {"AVLORA_DATA_DIR": str(data_dir), "AVLORA_RETENTION_DAYS": "30"}
    env.pop("AVLORA_DATABASE_URL", None)
    env.pop("AVLORA_STORE_URL", None)
    gc = lambda *args: subprocess.run([sys.executable, "-m", "avlora.cli", "gc", *args], env=env,  # noqa: E731
                                      capture_output=True, text=True, timeout=120)
    dry = gc("--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would reclaim 0.0 MB in 3 files" in dry.stdout and "input of an ended job" in dry.stdout
    assert len(store.list(f"jobs/{job_id}")) == 6
    done = gc()
    assert "reclaimed 0.0 MB in 3 files" in done.stdout
    assert len(store.list(f"jobs/{job_id}")) == 3
    assert "reclaimed 0.0 MB in 3 files (retention 0 days)" in gc("--days", "0").stdout
    assert store.list("jobs") == []


def test_the_ledger_sweeps_the_store_at_start_and_periodically(tmp_path):
    """Nobody has to run `avlora gc`: the ledger's event consumer applies retention at start (an
    ended job's outputs past the period go) and again every AVLORA_RETENTION_SWEEP_HOURS (files a
    stage wrote after its job ended go at the next sweep)."""
    data_dir = tmp_path / "state"
    data_dir.mkdir()
    old, recent = ended_job(data_dir), ended_job(data_dir)
    store = LocalStore(data_dir / "store")
    for job_id in (old, recent):
        write_job_files(store, job_id)
    # the old job ended 40 days ago (as the ledger records it), the recent one just now
    with sqlite3.connect(data_dir / "ledger.db") as db:
        db.execute("UPDATE jobs SET updated_at = datetime('now', '-40 days') WHERE id = ?", (old,))
    stack = Stack(data_dir, services=("ledger",), extra_env={
        "AVLORA_RETENTION_DAYS": "30", "AVLORA_RETENTION_SWEEP_HOURS": str(1 / 3600)})  # every second
    stack.start()
    try:
        deadline = time.monotonic() + 30
        while store.list(f"jobs/{old}") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert store.list(f"jobs/{old}") == []
        recent_files = JobFiles(recent)
        assert store.list(recent_files.root) == sorted([recent_files.debug_dataset, recent_files.checkpoint,
                                                        recent_files.output("lora.safetensors")])
        store.write_bytes(recent_files.cached("latents", "late.pt"), b"x" * 40)  # written after the end
        while store.exists(recent_files.cached("latents", "late.pt")) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not store.exists(recent_files.cached("latents", "late.pt"))
        assert store.exists(recent_files.output("lora.safetensors"))
        assert "retention sweep" in (data_dir / "logs" / "ledger.log").read_text()
    finally:
        stack.stop()
