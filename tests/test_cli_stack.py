"""The whole stack, as a user runs it: `avlora up` in a process, the CLI for everything else."""

import json
import os
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
SMALL = ["--resolution", "low", "--aspect-ratio", "1:1", "--number-of-frames", "17", "--frame-rate", "24",
         "--validation-resolution", "low", "--validation-number-of-frames", "17"]


@pytest.fixture
def stack_dir(tmp_path, tiny_model_dir):
    """`avlora up` as a real process; yields its data dir once stack.json exists."""
    data_dir = tmp_path / "stack"
    env = os.environ | {"AVLORA_MODEL_DIR": str(tiny_model_dir), "AVLORA_ACK_WAIT_S": "6"}
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
    job_id = cli(stack_dir, "submit", "v2a", data, "--steps", "100", "--trigger-phrase", "bnc3",
                 "--validation", f"bnc3 a ball|{silent}", *SMALL).stdout.strip()
    watched = cli(stack_dir, "watch", job_id, check=False)
    assert watched.returncode == 0, watched.stdout + watched.stderr
    job = status(stack_dir, job_id)
    assert job["state"] == "SUCCEEDED" and job["params"]["v2a"]["number_of_frames"] == 17
    outputs = job["outputs"]
    assert {"lora_file", "config_file", "audio"} <= set(outputs) and "video" not in outputs
    store = stack_dir / "store"
    for uri in outputs.values():
        assert (store / uri.removeprefix("store://")).stat().st_size > 0
    config = json.loads((store / outputs["config_file"].removeprefix("store://")).read_text())
    assert config["trigger_phrase"] == "bnc3"
    assert job["billed_units"] == "100" and job["cost"] == pytest.approx(0.49)
    usage = json.loads(cli(stack_dir, "usage", "--json").stdout)
    assert usage["total_units"] == "100"
    assert job_id in cli(stack_dir, "list").stdout


def test_av2av_job_end_to_end_through_the_cli(stack_dir, tmp_path):
    data = write_demo_dataset("av2av", tmp_path / "pairs.zip", clips=3, frames=17, size=(96, 96))
    reference = write_validation_clip(tmp_path / "ref.mp4", "av2av", frames=17, size=(96, 96))
    job_id = cli(stack_dir, "submit", "av2av", data, "--steps", "100", "--validation", f"a ball|{reference}",
                 *SMALL).stdout.strip()
    assert cli(stack_dir, "watch", job_id, check=False).returncode == 0, status(stack_dir, job_id)
    job = status(stack_dir, job_id)
    assert {"lora_file", "config_file", "video"} <= set(job["outputs"])
    assert job["billed_units"] == "100" and job["cost"] == pytest.approx(0.68)


def test_a_bad_dataset_fails_with_the_file_named_and_is_billed_zero(stack_dir, tmp_path):
    good = write_clip(tmp_path / "good.mp4", frames=20)
    silent = write_clip(tmp_path / "quiet.mp4", frames=20, audio_rate=None)
    data = zip_files(tmp_path / "bad.zip", {"clips/good.mp4": good, "clips/quiet.mp4": silent})
    job_id = cli(stack_dir, "submit", "v2a", data, *SMALL).stdout.strip()
    watched = cli(stack_dir, "watch", job_id, check=False)
    assert watched.returncode == 1
    job = status(stack_dir, job_id)
    assert job["state"] == "FAILED" and "quiet.mp4" in job["error"] and "audio" in job["error"]
    assert job.get("billed_units", "0") == "0"


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
    assert job["state"] == "CANCELLED" and job.get("billed_units", "0") == "0"
    # The trainer stops within seconds: it reports no job any more.
    info = json.loads((stack_dir / "stack.json").read_text())
    with grpc.insecure_channel(info["trainer_addr"]) as channel:
        trainer = stages_pb2_grpc.TrainerServiceStub(channel)
        while trainer.GetTrainerStatus(stages_pb2.TrainerStatusRequest()).job_id == job_id:
            assert time.monotonic() - cancelled_at < 30, "the trainer did not stop"
            time.sleep(0.5)
