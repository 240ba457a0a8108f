"""The artifact store's contract, run against both backends: a local directory and a real
S3-compatible server (SeaweedFS on loopback)."""

import hashlib
import time
import uuid

import httpx
import pytest

from avlora.store import JobFiles, LocalFiles, LocalStore
from avlora.stores import open_store
from avlora.store_s3 import S3Store
from s3_server import s3_server  # noqa: F401  (fixture)


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    server = request.getfixturevalue("s3_server")
    return S3Store(server.bucket, f"test-{uuid.uuid4().hex[:8]}", client=server.client())


def test_files_go_in_and_come_out_whole(store, tmp_path):
    files = JobFiles("job1")
    source = tmp_path / "big.bin"
    with source.open("wb") as handle:  # 40 MiB: above the multipart threshold
        for block in range(40):
            handle.write(hashlib.sha256(str(block).encode()).digest() * 32768)
    uri = store.put_file(files.checkpoint, source)
    assert uri == f"store://{files.checkpoint}"
    assert store.exists(uri) and store.size(uri) == source.stat().st_size
    copy = store.get_file(uri, tmp_path / "copy" / "big.bin")
    assert copy.read_bytes() == source.read_bytes()
    assert b"".join(store.chunks(uri, 1 << 20)) == source.read_bytes()
    for offset in (0, 12345, source.stat().st_size - 7):  # what a ranged download reads
        with store.open_read(uri, offset) as stream:
            assert stream.read(100) == source.read_bytes()[offset:offset + 100]
    with store.local_file(uri) as local:
        assert local.read_bytes()[:100] == source.read_bytes()[:100]
    moved = store.move_file(files.output("moved.bin"), copy)  # put in, and the local file is gone
    assert not copy.exists() and store.read_bytes(moved) == source.read_bytes()


def test_listing_sizes_and_removal_of_a_folder(store):
    files = JobFiles("job2")
    store.write_bytes(files.dataset_zip, b"zip")
    store.write_bytes(files.extracted("a.mp4"), b"a" * 10)
    store.write_bytes(files.cached("latents", "a.pt"), b"b" * 20)
    store.write_bytes(files.output("lora.safetensors"), b"c" * 30)
    assert store.list(files.stage_dir("ingest")) == [files.dataset_zip, files.extracted("a.mp4")]
    assert store.usage(files.root) == 63
    objects = store.objects(files.root)
    assert [o.key for o in objects] == sorted([files.dataset_zip, files.extracted("a.mp4"),
                                              files.cached("latents", "a.pt"), files.output("lora.safetensors")])
    assert all(abs(o.modified - time.time()) < 300 for o in objects)
    for folder in files.input_dirs:
        store.remove(folder)
    assert store.list(files.root) == [files.output("lora.safetensors")]
    store.remove(files.output("lora.safetensors"))
    assert not store.exists(files.output("lora.safetensors")) and store.list(files.root) == []


def test_missing_artifacts_and_bad_keys(store, tmp_path):
    assert not store.exists("jobs/none/outputs/x")
    with pytest.raises(FileNotFoundError):
        store.get_file("jobs/none/outputs/x", tmp_path / "x")
    with pytest.raises(ValueError):
        store.exists("store://../etc/passwd")
    assert store.list("jobs/none") == []
    store.remove("jobs/none")  # nothing there: no error


def test_reuse_or_write_and_local_files(store, tmp_path):
    calls = []
    key = JobFiles("job3").manifest
    for _ in range(2):
        store.reuse_or_write(key, lambda: calls.append(1) or b"manifest")
    assert calls == [1] and store.read_bytes(key) == b"manifest"
    local = LocalFiles(store, tmp_path / "scratch")(key)
    assert local.read_bytes() == b"manifest"


def test_open_store_picks_the_backend_from_the_url(tmp_path, s3_server, monkeypatch):
    assert isinstance(open_store(tmp_path / "s"), LocalStore)
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    store = open_store(f"s3://{s3_server.bucket}/from-url")
    assert isinstance(store, S3Store) and store.prefix == "from-url"
    store.write_bytes("uploads/u1", b"payload")
    assert s3_server.client().get_object(Bucket=s3_server.bucket, Key="from-url/uploads/u1")["Body"].read() == b"payload"


def test_presigned_urls_work_until_they_expire_and_refuse_tampering(s3_server):
    store = S3Store(s3_server.bucket, "presign", client=s3_server.client())
    store.write_bytes("jobs/j/outputs/lora.safetensors", b"weights")
    store.write_bytes("jobs/j/outputs/other.bin", b"secret")
    url = store.presigned_url("jobs/j/outputs/lora.safetensors", 2)
    assert httpx.get(url).content == b"weights"
    tampered = url.replace("lora.safetensors", "other.bin")
    assert httpx.get(tampered).status_code == 403
    signature = url.split("X-Amz-Signature=")[1][:64]
    forged = url.replace(signature, signature[:-1] + ("0" if signature[-1] != "0" else "1"))
    assert httpx.get(forged).status_code == 403
    time.sleep(3)
    assert httpx.get(url).status_code == 403
