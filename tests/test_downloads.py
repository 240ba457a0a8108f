"""A job's outputs fetched from outside the stack, whose store is a real S3 server (SeaweedFS): the
DownloadArtifact RPC (whole, by name, by byte range, refused to strangers), presigned URLs, the
CLI's `download` and `watch --download`. (With the local store: tests/test_cli_stack.py downloads,
tests/test_store.py reads ranges of both backends.)"""

import os
import secrets
import subprocess
import sys
import time

import grpc
import httpx
import pytest

from avlora.client import Endpoints
from avlora.job_state import output_uris
from avlora.demo_data import write_demo_dataset
from avlora.store_s3 import S3Store
from avlora.v1 import jobs_pb2
from s3_server import s3_server  # noqa: F401  (fixture)

AVLORA = [sys.executable, "-m", "avlora.cli"]
SMALL = ["--steps", "100", "--resolution", "low", "--aspect-ratio", "16:9", "--number-of-frames", "17"]


@pytest.fixture
def stack_env(make_stack, s3_server):
    """A running stack whose store is an S3 bucket, with two tenants' keys."""
    own, other = "avl_own_" + secrets.token_urlsafe(16), "avl_other_" + secrets.token_urlsafe(16)
    prefix = f"dl-{secrets.token_hex(4)}"
    env = {"AVLORA_LEDGER_KEYS": f"local:{own},other:{other}"} | s3_server.env | {
        "AVLORA_STORE_URL": f"s3://{s3_server.bucket}/{prefix}", "AVLORA_DOWNLOAD_URL_TTL_S": "8"}
    stack = make_stack(env)
    store = S3Store(s3_server.bucket, prefix, client=s3_server.client())
    cli_env = os.environ | env | {"AVLORA_API_KEY": own}
    return stack, cli_env, other, store


def cli(stack, env, *args):
    return subprocess.run([*AVLORA, "--data-dir", str(stack.data_dir), *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=600)


def test_outputs_download_through_the_rpc_and_the_cli(stack_env, tmp_path):
    stack, env, other_key, store = stack_env
    data = write_demo_dataset("v2a", tmp_path / "demo.zip", clips=3, frames=17, size=(64, 64))
    job_id = cli(stack, env, "submit", "v2a", data, *SMALL).stdout.strip()
    watched = cli(stack, env, "watch", job_id, "--download", "--dir", tmp_path / "watched")
    assert watched.returncode == 0, watched.stdout + watched.stderr

    endpoints = Endpoints(api=stack.info["ledger_addr"], api_key=env["AVLORA_API_KEY"], ingest="", preprocess="")
    job = endpoints.jobs().GetJob(jobs_pb2.GetJobRequest(job_id=job_id), metadata=endpoints.auth, timeout=30)
    outputs = output_uris(job.outputs)  # the files; the audio figures are data in the reply
    assert {"lora_file", "lora_comfyui_file", "config_file", "audio", "audio_base", "preview_video",
            "preview_video_base", "metrics_file", "spectrograms"} <= set(outputs) and job.outputs.audio_figures
    for field, uri in outputs.items():  # every output came down whole, named as in the store
        name = uri.rsplit("/", 1)[1]
        assert (tmp_path / "watched" / name).read_bytes() == store.read_bytes(uri), field

    deadline = time.monotonic() + 20  # retention: the ledger deletes the inputs once the job ended
    while store.list(f"jobs/{job_id}/ingest") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert store.list(f"jobs/{job_id}/ingest") == [] and store.list(f"jobs/{job_id}/preprocess") == []
    assert store.list("uploads") == []

    got = cli(stack, env, "download", job_id, "--dir", tmp_path / "cli")
    assert got.returncode == 0, got.stderr
    assert sorted(p.name for p in (tmp_path / "cli").iterdir()) == sorted(u.rsplit("/", 1)[1] for u in outputs.values())

    # by file name, in chunks: the first names the file and its size
    chunks = list(endpoints.jobs().DownloadArtifact(jobs_pb2.DownloadArtifactRequest(
        job_id=job_id, name="lora.safetensors"), metadata=endpoints.auth, timeout=60))
    assert chunks[0].name == "lora.safetensors" and chunks[0].size == store.size(outputs["lora_file"])
    assert b"".join(c.data for c in chunks) == store.read_bytes(outputs["lora_file"])

    # a byte range (what an HTTP Range request of the web page asks for): the size is the whole file's
    whole = store.read_bytes(outputs["lora_file"])
    for offset, length, expected in ((10, 100, whole[10:110]), (len(whole) - 7, 0, whole[-7:]),
                                     (5, len(whole) * 2, whole[5:]), (len(whole), 0, b"")):
        ranged = list(endpoints.jobs().DownloadArtifact(jobs_pb2.DownloadArtifactRequest(
            job_id=job_id, name="lora_file", offset=offset, length=length), metadata=endpoints.auth, timeout=60))
        assert ranged[0].size == len(whole) and b"".join(c.data for c in ranged) == expected, (offset, length)

    stranger = [("authorization", f"Bearer {other_key}")]
    for name, metadata, code in (("lora_file", stranger, grpc.StatusCode.NOT_FOUND),
                                 ("lora_file", [], grpc.StatusCode.UNAUTHENTICATED),
                                 ("../../uploads/x", endpoints.auth, grpc.StatusCode.NOT_FOUND),
                                 ("ingest/dataset.zip", endpoints.auth, grpc.StatusCode.NOT_FOUND)):
        with pytest.raises(grpc.RpcError) as refused:
            list(endpoints.jobs().DownloadArtifact(jobs_pb2.DownloadArtifactRequest(job_id=job_id, name=name),
                                                   metadata=metadata, timeout=30))
        assert refused.value.code() == code, name

    assert set(job.download_urls) == set(outputs)
    # fresh URLs (on a loaded machine the ones above may be older than their 8 s)
    job = endpoints.jobs().GetJob(jobs_pb2.GetJobRequest(job_id=job_id), metadata=endpoints.auth, timeout=30)
    url = job.download_urls["lora_file"]
    assert httpx.get(url).content == store.read_bytes(outputs["lora_file"])
    assert httpx.get(url.replace("lora.safetensors", "config.json")).status_code == 403  # tampered
    time.sleep(max(0.0, job.download_urls_expire_at.seconds - time.time()) + 2)
    assert httpx.get(url).status_code == 403  # expired
