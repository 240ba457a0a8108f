"""The whole stack, as a user runs it: `avlora up` in a process, the CLI for everything else."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import grpc
import pytest
from media import write_clip, zip_files

from avlora.demo_data import write_demo_dataset, write_validation_clip
from avlora.v1 import stages_pb2, stages_pb2_grpc

AVLORA = [sys.executable, "-m", "avlora.cli"]
# The smallest bucket of the seeds' table (512x288) and few frames keep jobs short on a CPU.
SMALL = ["--resolution", "low", "--aspect-ratio", "16:9", "--number-of-frames", "17", "--frame-rate", "24",
         "--validation-resolution", "low", "--validation-aspect-ratio", "16:9", "--validation-number-of-frames", "17"]


@pytest.fixture
def stack_dir(tmp_path, tiny_model_dir):
    """`avlora up` as a real process; yields its data dir once stack.json exists."""
    data_dir = tmp_path / "stack"
    env = os.environ | {"AVLORA_MODEL_DIR": str(tiny_model_dir), "AVLORA_ACK_WAIT_S": "6",
                        "AVLORA_INGEST_ALLOW_NETWORKS": "127.0.0.0/8", "AVLORA_INGEST_RETRIES": "1"}
    up = subprocess.Popen([*AVLORA, "--data-dir", str(data_dir), "up"], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 180
    while not (data_dir / "stack.json").exists():
        assert up.poll() is None, up.stdout.read()
        assert time.monotonic() < deadline, "stack did not come up"
        time.sleep(0.2)
    yield data_dir
    up.send_signal(signal.SIGTERM)
    assert up.wait(timeout=90) == 0
    assert not (data_dir / "stack.json").exists()


def cli(data_dir, *args, check=True):
    result = subprocess.run([*AVLORA, "--data-dir", str(data_dir), *map(str, args)], capture_output=True,
                            text=True, timeout=900)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def status(data_dir, job_id) -> dict:
    return json.loads(cli(data_dir, "status", job_id, "--json").stdout)


def test_v2a_job_end_to_end_through_the_cli(stack_dir, tmp_path):
    data = write_demo_dataset("v2a", tmp_path / "demo.zip", clips=4, frames=17, size=(96, 96))
    silent = write_validation_clip(tmp_path / "silent.mp4", "v2a", frames=17, size=(96, 96))
    submitted = cli(stack_dir, "submit", "v2a", data, "--steps", "100", "--trigger-phrase", "bnc3",
                    "--validation", f"bnc3 a ball|{silent}", *SMALL, "--validation-number-of-frames", "18")
    job_id = submitted.stdout.strip()
    assert submitted.stderr == "note: the server set validation_number_of_frames 18 → 17\n"
    watched = cli(stack_dir, "watch", job_id, check=False)
    assert watched.returncode == 0, watched.stdout + watched.stderr
    # Not a terminal: plain lines, each phase ended once with its full count, the summary on its own lines.
    lines = watched.stdout.splitlines()
    assert "\r" not in watched.stdout and "\x1b" not in watched.stdout
    assert len([line for line in lines if re.fullmatch(r"preprocess files 4/4 in [\dm]+s", line)]) == 1, lines
    assert len([line for line in lines if re.fullmatch(r"train steps 100/100 in [\dm]+s \(.*loss [\d.]+.*\)", line)]) == 1, lines
    assert lines.count("[SUCCEEDED]") == 1 and f"job {job_id} (v2a): SUCCEEDED" in lines
    assert all(line.count("[") <= 1 for line in lines), lines
    job = status(stack_dir, job_id)
    assert job["state"] == "SUCCEEDED" and job["params"]["v2a"]["number_of_frames"] == 17
    outputs = job["outputs"]
    assert {"lora_file", "config_file", "audio"} <= set(outputs) and "video" not in outputs
    store = stack_dir / "store"
    for uri in outputs.values():
        assert (store / uri.removeprefix("store://")).stat().st_size > 0
    config = json.loads((store / outputs["config_file"].removeprefix("store://")).read_text())
    assert config["trigger_phrase"] == "bnc3"
    assert job["billed_units"] == 100 and job["cost"] == pytest.approx(0.49)
    # It learned: the validation loss is below the untrained model's. 4 clips are too few to hold
    # one out: the loss is measured on the training clips, and status and config.json say so.
    assert job["progress"]["validation_loss"] < job["progress"]["baseline_validation_loss"]
    assert job["progress"]["validation_loss_on"] == config["validation_loss_on"] == "training_clips"
    assert "on training clips)" in cli(stack_dir, "status", job_id).stdout
    usage = json.loads(cli(stack_dir, "usage", "--json").stdout)
    assert usage["total_units"] == 100
    assert job_id in cli(stack_dir, "list").stdout


def test_av2av_job_end_to_end_through_the_cli(stack_dir, tmp_path):
    data = write_demo_dataset("av2av", tmp_path / "pairs.zip", clips=3, frames=17, size=(96, 96))
    reference = write_validation_clip(tmp_path / "ref.mp4", "av2av", frames=17, size=(96, 96))
    job_id = cli(stack_dir, "submit", "av2av", data, "--steps", "100", "--validation", f"a ball|{reference}",
                 *SMALL).stdout.strip()
    assert cli(stack_dir, "watch", job_id, check=False).returncode == 0, status(stack_dir, job_id)
    job = status(stack_dir, job_id)
    assert {"lora_file", "config_file", "video"} <= set(job["outputs"])
    assert job["billed_units"] == 100 and job["cost"] == pytest.approx(0.68)


def test_a_bad_dataset_fails_with_the_file_named_and_is_billed_zero(stack_dir, tmp_path):
    good = write_clip(tmp_path / "good.mp4", frames=20)
    silent = write_clip(tmp_path / "quiet.mp4", frames=20, audio_rate=None)
    data = zip_files(tmp_path / "bad.zip", {"clips/good.mp4": good, "clips/quiet.mp4": silent})
    job_id = cli(stack_dir, "submit", "v2a", data, *SMALL).stdout.strip()
    watched = cli(stack_dir, "watch", job_id, check=False)
    assert watched.returncode == 1
    job = status(stack_dir, job_id)
    assert job["state"] == "FAILED" and "quiet.mp4" in job["error"] and "audio" in job["error"]
    assert job.get("billed_units", 0) == 0
    cancelled = cli(stack_dir, "cancel", job_id, check=False)
    assert cancelled.returncode == 1
    assert cancelled.stdout == f"job {job_id} had already finished: FAILED; nothing to cancel\n"


def test_inspect_reports_what_is_wrong_before_paying(stack_dir, tmp_path):
    good = write_clip(tmp_path / "good.mp4", frames=20)
    short = write_clip(tmp_path / "short.mp4", frames=5)
    silent = write_clip(tmp_path / "quiet.mp4", frames=20, audio_rate=None)
    ok = cli(stack_dir, "inspect", "v2a", zip_files(tmp_path / "ok.zip", {"good.mp4": good, "short.mp4": short}),
             *SMALL)
    assert "dataset OK" in ok.stdout and "skipped short.mp4" in ok.stdout
    bad = cli(stack_dir, "inspect", "v2a", zip_files(tmp_path / "bad.zip", {"good.mp4": good, "quiet.mp4": silent}),
              "--json", *SMALL, check=False)
    report = json.loads(bad.stdout)
    assert bad.returncode == 1 and report.get("ok") is not True
    assert any("quiet.mp4" in error and "audio" in error for error in report["errors"])
    assert cli(stack_dir, "list").stdout.strip() == ""
    assert json.loads(cli(stack_dir, "usage", "--json").stdout).get("lines", []) == []


def wait_until_ended(data_dir, job_id, timeout=300) -> dict:
    deadline = time.monotonic() + timeout
    while (job := status(data_dir, job_id))["state"] not in ("SUCCEEDED", "FAILED", "CANCELLED"):
        assert time.monotonic() < deadline, job
        time.sleep(0.3)
    return job


def test_broken_and_hostile_archives_fail_billed_zero_and_ingest_keeps_serving(stack_dir, tmp_path):
    import zipfile
    from http.server import HTTPServer, SimpleHTTPRequestHandler
    from threading import Thread

    clip = write_clip(tmp_path / "a.mp4", frames=20)
    traversal = tmp_path / "traversal.zip"
    with zipfile.ZipFile(traversal, "w") as archive:
        archive.write(clip, "a.mp4")
        archive.writestr("../../escape.mp4", b"x")
    cases = {
        "not a zip": (tmp_path / "notazip.zip", "not a zip"),
        "traversal": (traversal, "escape.mp4"),
        "images only": (zip_files(tmp_path / "images.zip", {"a.png": b"png", "b.jpg": b"jpg"}),
                        "image datasets are rejected: foley requires motion over time"),
    }
    cases["not a zip"][0].write_bytes(b"this is not an archive")
    server = HTTPServer(("127.0.0.1", 0), SimpleHTTPRequestHandler)
    Thread(target=server.serve_forever, daemon=True).start()
    missing = f"http://127.0.0.1:{server.server_port}/nowhere/data.zip"
    try:
        jobs = {name: cli(stack_dir, "submit", "v2a", path, *SMALL).stdout.strip()
                for name, (path, _) in cases.items()}
        jobs["404"] = cli(stack_dir, "submit", "v2a", missing, *SMALL).stdout.strip()
        expected = {name: words for name, (_, words) in cases.items()} | {"404": f"HTTP 404 for {missing}"}
        for name, job_id in jobs.items():
            job = wait_until_ended(stack_dir, job_id)
            assert job["state"] == "FAILED" and expected[name].lower() in job["error"].lower(), (name, job)
            assert job.get("billed_units", 0) == 0
    finally:
        server.shutdown()
    assert not (stack_dir / "escape.mp4").exists() and not (stack_dir.parent / "escape.mp4").exists()
    assert {p.name for p in (stack_dir / "store").iterdir()} <= {"jobs", "uploads"}  # nothing escaped the store
    # Still serving: a good dataset goes through ingest afterwards.
    data = write_demo_dataset("v2a", tmp_path / "good.zip", clips=2, frames=17, size=(64, 64))
    job_id = cli(stack_dir, "submit", "v2a", data, *SMALL).stdout.strip()
    deadline = time.monotonic() + 120
    while status(stack_dir, job_id)["state"] in ("QUEUED", "INGESTING"):
        assert time.monotonic() < deadline
        time.sleep(0.3)
    assert status(stack_dir, job_id)["state"] in ("PREPROCESSING", "TRAINING", "SUCCEEDED")
    cli(stack_dir, "cancel", job_id)


def test_invalid_parameters_are_refused_by_the_cli(stack_dir, tmp_path):
    data = write_demo_dataset("av2av", tmp_path / "pairs.zip", clips=1, frames=17, size=(64, 64))
    result = cli(stack_dir, "submit", "av2av", data, "--reference-temporal-scale-factor", "2", check=False)
    assert result.returncode != 0
    assert "INVALID_ARGUMENT" in result.stderr and "reference_temporal_scale_factor" in result.stderr
    assert cli(stack_dir, "list").stdout.strip() == ""


def test_cancelling_a_running_job(stack_dir, tmp_path):
    data = write_demo_dataset("v2a", tmp_path / "demo.zip", clips=2, frames=17, size=(96, 96))
    job_id = cli(stack_dir, "submit", "v2a", data, "--steps", "20000", *SMALL).stdout.strip()
    deadline = time.monotonic() + 300
    while status(stack_dir, job_id)["state"] != "TRAINING":
        assert time.monotonic() < deadline, status(stack_dir, job_id)
        time.sleep(0.5)
    cancelled_at = time.monotonic()
    assert "CANCELLED" in cli(stack_dir, "cancel", job_id).stdout
    assert cli(stack_dir, "watch", job_id, check=False).returncode == 1
    job = status(stack_dir, job_id)
    assert job["state"] == "CANCELLED" and job.get("billed_units", 0) == 0
    assert cli(stack_dir, "cancel", job_id).stdout == f"job {job_id} was already cancelled\n"
    # The trainer stops within seconds: it reports no job any more.
    info = json.loads((stack_dir / "stack.json").read_text())
    with grpc.insecure_channel(info["trainer_addr"]) as channel:
        trainer = stages_pb2_grpc.TrainerServiceStub(channel)
        while trainer.GetTrainerStatus(stages_pb2.TrainerStatusRequest(),
                                      metadata=[("x-avlora-internal-token", info["internal_token"])]).job_id == job_id:
            assert time.monotonic() - cancelled_at < 30, "the trainer did not stop"
            time.sleep(0.5)
