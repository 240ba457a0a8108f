"""The whole stack, as a user runs it: `avlora up` in a process, the CLI for everything else."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import wave

import av
import grpc
import numpy as np
import pytest
from media import write_clip, zip_files
from safetensors import safe_open

from avlora.demo_data import render_audio, validation_plan, write_demo_dataset, write_validation_clip
from avlora.v1 import stages_pb2, stages_pb2_grpc

AVLORA = [sys.executable, "-m", "avlora.cli"]
# The smallest bucket of the seeds' table (512x288) and few frames keep jobs short on a CPU.
SMALL = ["--resolution", "low", "--aspect-ratio", "16:9", "--number-of-frames", "17", "--frame-rate", "24",
         "--validation-resolution", "low", "--validation-aspect-ratio", "16:9", "--validation-number-of-frames", "17"]


@pytest.fixture(scope="module")
def stack_dir(tmp_path_factory, tiny_model_dir):
    """`avlora up` as a real process, one for the module's tests (each checks its own jobs); yields
    its data dir once stack.json exists, and checks that it shuts down cleanly."""
    data_dir = tmp_path_factory.mktemp("cli") / "stack"
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


def job_ids(data_dir) -> set[str]:
    return {line.split()[0] for line in cli(data_dir, "list").stdout.splitlines()}


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
    # (Checking 4 small files can be over before `watch` attaches: that phase is then not shown at all.)
    lines = watched.stdout.splitlines()
    assert "\r" not in watched.stdout and "\x1b" not in watched.stdout
    for phase in ("preprocess files 4/4", "preprocess clips 4/4", "train steps 100/100"):
        assert len([line for line in lines if line.startswith(f"{phase} in ")]) <= 1, (phase, lines)
    assert len([line for line in lines if re.fullmatch(r"train steps 100/100 in [\dm]+s \(.*loss [\d.]+.*\)", line)]) == 1, lines
    assert lines.count("[SUCCEEDED]") == 1 and f"job {job_id} (v2a): SUCCEEDED" in lines
    assert all(line.count("[") <= 1 for line in lines), lines
    job = status(stack_dir, job_id)
    assert job["state"] == "SUCCEEDED" and job["params"]["v2a"]["number_of_frames"] == 17
    outputs = job["outputs"]
    assert {"lora_file", "config_file", "audio"} <= set(outputs) and "video" not in outputs
    store = stack_dir / "store"
    names = {}
    for field, uri in outputs.items():
        if field != "audio_figures":
            names[field] = uri.rsplit("/", 1)[1]
            assert (store / uri.removeprefix("store://")).stat().st_size > 0
    # The base-versus-LoRA evidence (docs/evidence.md): files, and the figures in status --json.
    assert {names[f] for f in ("audio_base", "preview_video", "preview_video_base", "metrics_file", "spectrograms")} == {
        "preview_base.wav", "preview_video.mp4", "preview_video_base.mp4", "metrics.json", "spectrograms.png"}
    figures = outputs["audio_figures"]
    assert [(f["name"], f["source"]) for f in figures[:2]] == [("preview 1", "lora"), ("preview 1", "base")]
    clips = sorted(f["name"] for f in figures if f["source"] == "training")
    assert len(clips) == 4 and all(name.endswith(".mp4") for name in clips)
    assert all("loudness_lufs" in f and "peak_dbfs" in f for f in figures)
    metrics = json.loads((store / outputs["metrics_file"].removeprefix("store://")).read_text())
    assert [f["name"] for f in metrics["audio_figures"]] == [f["name"] for f in figures]
    downloaded = cli(stack_dir, "download", job_id, "--dir", tmp_path / "outputs").stdout
    assert "spectrograms.png" in downloaded and "preview_video_base.mp4" in downloaded
    for field, name in names.items():
        assert (tmp_path / "outputs" / name).read_bytes() == (store / outputs[field].removeprefix("store://")).read_bytes()
    assert "download_urls" not in job  # a local store has no presigned URLs: files come through the RPC
    config = json.loads((store / outputs["config_file"].removeprefix("store://")).read_text())
    assert config["trigger_phrase"] == "bnc3"
    assert job["billed_units"] == 100 and job["cost"] == pytest.approx(0.49)
    # It learned: the validation loss is below the untrained model's. 4 clips are too few to hold
    # one out: the loss is measured on the training clips, and status and config.json say so.
    assert job["progress"]["validation_loss"] < job["progress"]["baseline_validation_loss"]
    assert job["progress"]["validation_loss_on"] == config["validation_loss_on"] == "training_clips"
    assert "on training clips)" in cli(stack_dir, "status", job_id).stdout
    usage = json.loads(cli(stack_dir, "usage", "--job", job_id, "--json").stdout)
    assert usage["total_units"] == 100
    assert job_id in cli(stack_dir, "list").stdout


def test_av2av_job_end_to_end_through_the_cli(stack_dir, tmp_path):
    data = write_demo_dataset("av2av", tmp_path / "pairs.zip", clips=3, frames=17, size=(96, 96))
    reference = write_validation_clip(tmp_path / "ref.mp4", "av2av", frames=17, size=(96, 96))
    job_id = cli(stack_dir, "submit", "av2av", data, "--steps", "100", "--validation", f"a ball|{reference}",
                 *SMALL).stdout.strip()
    assert cli(stack_dir, "watch", job_id, check=False).returncode == 0, status(stack_dir, job_id)
    job = status(stack_dir, job_id)
    assert {"lora_file", "config_file", "video", "video_base", "metrics_file", "spectrograms"} <= set(job["outputs"])
    assert job["outputs"]["video_base"].endswith("/preview_base.mp4")
    assert "preview_video" not in job["outputs"]
    assert job["billed_units"] == 100 and job["cost"] == pytest.approx(0.68)


def test_a2v_job_end_to_end_through_the_cli(stack_dir, tmp_path):
    """Audio to video: inspected, then trained on clips with sound; previews from a WAV and from a
    video's sound are the generated picture with that sound muxed in."""
    data = write_demo_dataset("a2v", tmp_path / "a2v.zip", clips=3, frames=17, size=(96, 96))
    sounding = write_validation_clip(tmp_path / "sounding.mp4", "a2v", frames=17, size=(96, 96))
    song = tmp_path / "clicks.wav"
    with wave.open(str(song), "wb") as out:  # 16-bit mono 16 kHz
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes((render_audio(validation_plan(17, seed=1), 24) * 32767).astype("<i2").tobytes())
    inspected = cli(stack_dir, "inspect", "a2v", data, *SMALL)
    assert "dataset OK" in inspected.stdout, inspected.stdout
    job_id = cli(stack_dir, "submit", "a2v", data, "--steps", "100", "--validation", f"a ball|{song}",
                 "--validation", f"a ball|{sounding}", *SMALL).stdout.strip()
    assert cli(stack_dir, "watch", job_id, check=False).returncode == 0, status(stack_dir, job_id)
    job = status(stack_dir, job_id)
    outputs, store = job["outputs"], stack_dir / "store"
    assert {"lora_file", "lora_comfyui_file", "config_file", "video", "video_base", "metrics_file"} <= set(outputs)
    assert "audio" not in outputs and "preview_video" not in outputs
    assert outputs["video"].endswith("/preview.mp4") and outputs["video_base"].endswith("/preview_base.mp4")
    for field in ("video", "video_base"):  # the generated 512x288 picture of both entries, each with its sound
        with av.open(str(store / outputs[field].removeprefix("store://"))) as container:
            stream = container.streams.video[0]
            assert (stream.codec_context.width, stream.codec_context.height) == (512, 288)
            assert len(list(container.decode(video=0))) == 2 * 17
        with av.open(str(store / outputs[field].removeprefix("store://"))) as container:
            sound = np.concatenate([frame.to_ndarray().reshape(-1) for frame in container.decode(audio=0)])
            assert np.abs(sound).max() > 0.01
    config = json.loads((store / outputs["config_file"].removeprefix("store://")).read_text())
    assert (config["mode"], config["training_type"]) == ("a2v", "audio-to-video")
    assert config["target_modules"] == ["to_q", "to_k", "to_v", "to_out.0"]  # Lightricks' a2v_lora.yaml
    for field in ("lora_file", "lora_comfyui_file"):
        with safe_open(str(store / outputs[field].removeprefix("store://")), framework="pt") as lora:
            assert lora.metadata()["mode"] == "a2v" and "reference_downscale_factor" not in lora.metadata()
    assert job["progress"]["validation_loss"] < job["progress"]["baseline_validation_loss"]
    assert job["billed_units"] == 100 and job["cost"] == pytest.approx(0.6)


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
    jobs_before = job_ids(stack_dir)
    ok = cli(stack_dir, "inspect", "v2a", zip_files(tmp_path / "ok.zip", {"good.mp4": good, "short.mp4": short}),
             *SMALL)
    assert "dataset OK" in ok.stdout and "skipped short.mp4" in ok.stdout
    assert "warning good.mp4: mono sound (the LoRA learns identical left and right channels)" in ok.stdout
    bad = cli(stack_dir, "inspect", "v2a", zip_files(tmp_path / "bad.zip", {"good.mp4": good, "quiet.mp4": silent}),
              "--json", *SMALL, check=False)
    report = json.loads(bad.stdout)
    assert bad.returncode == 1 and report.get("ok") is not True
    assert any("quiet.mp4" in error and "audio" in error for error in report["errors"])
    assert job_ids(stack_dir) == jobs_before, "inspecting records no job (so nothing can be billed)"


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
    jobs_before = job_ids(stack_dir)
    result = cli(stack_dir, "submit", "av2av", data, "--reference-temporal-scale-factor", "2", check=False)
    assert result.returncode != 0
    assert "INVALID_ARGUMENT" in result.stderr and "reference_temporal_scale_factor" in result.stderr
    assert job_ids(stack_dir) == jobs_before, "no job recorded"


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


def test_webhook_secret_and_url_through_the_cli(stack_dir, tmp_path):
    secret = cli(stack_dir, "webhook-secret").stdout.strip()
    assert secret.startswith("whsec_") and cli(stack_dir, "webhook-secret").stdout.strip() == secret
    rotated = cli(stack_dir, "webhook-secret", "--rotate").stdout.strip()
    assert rotated.startswith("whsec_") and rotated != secret
    assert cli(stack_dir, "webhook-secret").stdout.strip() == rotated
    refused = cli(stack_dir, "submit", "v2a", "https://e.com/d.zip", "--webhook-url", "http://192.168.1.20/hook",
                  check=False)
    assert refused.returncode != 0
    assert ("webhook_url: host 192.168.1.20 resolves to the non-public address 192.168.1.20, which is refused "
            "(AVLORA_INGEST_ALLOW_NETWORKS can allow a network)") in refused.stderr
    job_id = cli(stack_dir, "submit", "v2a", "https://e.com/d.zip", "--webhook-url", "http://127.0.0.1:9/hook",
                 "--request-id", "hooked").stdout.strip()
    assert status(stack_dir, job_id)["webhook_url"] == "http://127.0.0.1:9/hook"
