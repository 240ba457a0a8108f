"""The image (deploy/Dockerfile), built and run: its commands, its user and size, and a job end to end
with one container per process (NATS, ledger, ingest, preprocess, trainer) sharing one network
namespace, as the Kubernetes manifests run them in separate pods, the CLI in a container of its own.

Needs a Docker engine (DOCKER_HOST, or the default socket); skips without one. On a machine that
reaches no registry, `.ci/run` starts one with ../shared/tools/offline-docker, whose local
python:3.11-slim this test builds on (instead of the digest the Dockerfile pins) and whose local
CPU torch wheel it installs (TORCH_SPEC in the environment)."""

import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
TAG = "avlora:test"
LOCAL_BASE = "python:3.11-slim"
TOKEN, KEY = "internal-test-token", "avl_image_test_key"
# One network namespace: every process on its own ports, as in pods (gRPC, metrics).
PORTS = {"ledger": (50051, 9464), "ingest": (50061, 9465), "preprocess": (50071, 9466), "trainer": (50081, 9467)}
SMALL = "--resolution low --aspect-ratio 16:9 --number-of-frames 17 --validation-resolution low " \
        "--validation-aspect-ratio 16:9 --validation-number-of-frames 17"


def docker(*args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check:
        assert result.returncode == 0, f"docker {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result


def engine_reachable() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="module")
def image() -> str:
    if not engine_reachable():
        pytest.skip("no Docker engine reachable (DOCKER_HOST or /var/run/docker.sock); .ci/run starts one")
    args = []
    if docker("image", "inspect", LOCAL_BASE, check=False).returncode == 0:
        args += ["--build-arg", f"BASE={LOCAL_BASE}"]
    if os.environ.get("TORCH_SPEC"):  # offline-docker's local wheel: its dependencies come from PyPI
        args += ["--build-arg", f"TORCH_SPEC={os.environ['TORCH_SPEC']}", "--build-arg", "TORCH_INDEX="]
    docker("build", "--network", "host", "-f", "deploy/Dockerfile", *args, "-t", TAG, str(ROOT), timeout=1800)
    return TAG


def test_the_image_runs_avlora_commands_as_a_user_without_root(image):
    shown = docker("run", "--rm", "--network", "none", image)
    assert shown.stdout.startswith("usage: avlora") and "submit" in shown.stdout
    assert docker("run", "--rm", "--network", "none", image, "avlora", "--help").stdout.startswith("usage: avlora")
    assert docker("run", "--rm", "--network", "none", image, "id", "-u").stdout.strip() == "10001"
    inspected = json.loads(docker("image", "inspect", image).stdout)[0]
    assert "/data" in inspected["Config"]["Volumes"]
    assert inspected["Size"] < 2 * 1024**3  # the CPU torch build
    # One OpenCV, the headless one, and no libGL: scene detection imports and runs.
    probe = ("import importlib.metadata as m, cv2, numpy, scenedetect;"
             "names = {d.metadata['Name'].lower() for d in m.distributions()};"
             "assert 'opencv-python-headless' in names and 'opencv-python' not in names, names;"
             "assert not __import__('ctypes.util').util.find_library('GL');"
             "print(cv2.cvtColor(numpy.zeros((4, 4, 3), numpy.uint8), cv2.COLOR_BGR2GRAY).shape)")
    assert docker("run", "--rm", "--network", "none", image, "python", "-c", probe).stdout.strip() == "(4, 4)"


@pytest.fixture
def deployment(image):
    """NATS and the four services, each in its own container, on one network namespace and one data volume."""
    run = uuid.uuid4().hex[:8]
    volume, names = f"avlora-test-{run}", {}
    docker("volume", "create", volume)
    common = ["-v", f"{volume}:/data", "-e", "AVLORA_NATS_URL=nats://127.0.0.1:4222",
              "-e", f"AVLORA_INTERNAL_TOKEN={TOKEN}", "-e", "AVLORA_LEDGER_ADDR=127.0.0.1:50052",
              "-e", "AVLORA_MODEL_DIR=/data/models/tiny", "-e", "AVLORA_ACK_WAIT_S=10"]
    try:
        docker("run", "--rm", "--network", "none", *common, image, "avlora", "model", "tiny", "/data/models/tiny")
        names["nats"] = f"avlora-test-{run}-nats"
        docker("run", "-d", "--name", names["nats"], "--network", "none", *common, image,
               "nats-server", "-js", "-sd", "/data/nats", "-a", "127.0.0.1", "-p", "4222")
        for service, (grpc_port, metrics_port) in PORTS.items():
            names[service] = f"avlora-test-{run}-{service}"
            extra = ["-e", f"AVLORA_LEDGER_KEYS=local:{KEY}", "-e", "AVLORA_INTERNAL_PORT=50052"] \
                if service == "ledger" else []
            docker("run", "-d", "--name", names[service], "--network", f"container:{names['nats']}", *common, *extra,
                   "-e", f"AVLORA_GRPC_PORT={grpc_port}", "-e", f"AVLORA_METRICS_PORT={metrics_port}",
                   "-e", f"AVLORA_SCRATCH_DIR=/data/scratch/{service}", "-e", f"AVLORA_WORKER_NAME={service}",
                   image, service)
        ready = {"ledger": '"event": "serving metrics"', **{s: '"event": "worker ready"' for s in PORTS if s != "ledger"}}
        deadline = time.monotonic() + 300
        for service, line in ready.items():
            while line not in (logs := docker("logs", names[service]).stderr):
                state = json.loads(docker("inspect", names[service]).stdout)[0]["State"]
                assert state["Running"], f"{service} exited ({state['ExitCode']}):\n{logs}"
                assert time.monotonic() < deadline, f"{service} not ready:\n{logs}"
                time.sleep(1)
        yield volume, names
    finally:
        for name in reversed(names.values()):  # the services, then NATS
            docker("rm", "-f", name, check=False)
        docker("volume", "rm", "-f", volume, check=False)


def test_a_job_runs_end_to_end_with_one_container_per_process(image, deployment):
    volume, names = deployment
    client = ["run", "--rm", "--network", f"container:{names['nats']}", "-v", f"{volume}:/data",
              "-e", "AVLORA_ADDR=127.0.0.1:50051", "-e", f"AVLORA_API_KEY={KEY}",
              "-e", "AVLORA_INGEST_ADDR=127.0.0.1:50061", image]
    script = ("python -c \"from avlora.demo_data import write_demo_dataset as w; "
              "w('v2a', '/tmp/demo.zip', clips=2, frames=17, size=(96, 96))\" && "
              f"job=$(avlora submit v2a /tmp/demo.zip --steps 100 {SMALL}) && "
              "avlora watch $job > /dev/null && avlora status $job --json")
    job = json.loads(docker(*client, "sh", "-c", script, timeout=900).stdout)
    assert job["state"] == "SUCCEEDED" and job["billed_units"] == 100
    assert {"lora_file", "lora_comfyui_file", "config_file", "audio"} <= set(job["outputs"])
    # The outputs are in the shared store (the volume), written by the trainer's container.
    listed = docker(*client, "sh", "-c", f"ls /data/store/jobs/{job['id']}/outputs").stdout.split()
    assert {"lora.safetensors", "lora_comfyui.safetensors", "config.json", "preview.wav"} <= set(listed)
    # Each process serves its metrics on its own port; the ledger counted the job and its bill.
    for service, (_, metrics_port) in PORTS.items():
        text = docker(*client, "python", "-c", "import urllib.request as u; print(u.urlopen("
                      f"'http://127.0.0.1:{metrics_port}/metrics').read().decode())").stdout
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for family in text_string_to_metric_families(text) for s in family.samples}
        if service == "ledger":
            assert samples[("avlora_jobs_ended_total", (("mode", "v2a"), ("state", "SUCCEEDED")))] == 1
            assert samples[("avlora_billed_units_total", (("mode", "v2a"),))] == 100
        else:
            stage = "train" if service == "trainer" else service
            assert samples[("avlora_stage_duration_seconds_count",
                            (("mode", "v2a"), ("outcome", "succeeded"), ("stage", stage)))] == 1
    # Every line each service wrote is JSON, and those about the job name it.
    for service in PORTS:
        logs = docker("logs", names[service])
        for line in (logs.stdout + logs.stderr).splitlines():
            record = json.loads(line)
            assert record["worker"] == service, line
            if job["id"] in line:
                assert (record.get("job_id"), record.get("tenant")) == (job["id"], "local") and record.get("stage"), line
