"""Downloads from a real loopback HTTP server: retries, timeouts, the minimum speed, bounded
Retry-After waits, size limits, encoded bodies (a gzip bomb), redirects, the guard against requests
to private addresses and redacted error texts; and the ingest stage end to end over HTTP."""

import email.utils
import gzip
import ipaddress
import re
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from media import write_clip, zip_files

from avlora.params import AV2AVParams, V2AParams, V2AValidation
from avlora.store import LocalStore
from avlora.v1 import dataset_pb2
from avlora.stage import JobCancelled, JobContext, UserError
from services.ingest import stage
from avlora.netguard import is_allowed_address
from services.ingest.fetch import download
from services.ingest.limits import IngestLimits

BODY = b"x" * 300_000
GZIP_BOMB = gzip.compress(bytes(64 << 20))  # ~64 KB on the wire, 64 MiB decoded


class Handler(BaseHTTPRequestHandler):
    """Routes by path; `server.files` holds what /files/<name> serves, `server.hits` counts requests."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        hits = self.server.hits
        hits[self.path] = hits.get(self.path, 0) + 1
        first = hits[self.path] == 1
        route = self.path.split("?")[0]
        if route.startswith("/files/") and route[7:] in self.server.files:
            self.send_body(self.server.files[route[7:]])
        elif route == "/flaky":
            self.send_body(b"", code=500) if first else self.send_body(BODY)
        elif route == "/busy":
            self.send_body(b"", code=429, headers={"Retry-After": "0"}) if first else self.send_body(BODY)
        elif route.startswith("/status/"):
            self.send_body(b"nope", code=int(route[8:]))
        elif route == "/stall":
            self.send_body(b"0123456789", length=1000, then_sleep=3)
        elif route == "/short":
            self.send_body(b"a" * 500, length=1000)
        elif route == "/huge":
            self.send_body(b"a" * 1000, length=10**12)
        elif route == "/endless":
            self.send_response(200)
            self.end_headers()
            for _ in range(100):
                self.wfile.write(b"a" * 65536)
        elif route == "/trickle":
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            for _ in range(100):
                self.wfile.write(b"a")
                self.wfile.flush()
                time.sleep(0.05)
        elif route == "/drip":  # one byte every 0.1 s, for as long as the client listens
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            for _ in range(100000):
                self.wfile.write(b"a")
                self.wfile.flush()
                time.sleep(0.1)
        elif route == "/patient":
            self.send_body(b"", code=429, headers={"Retry-After": "100000"})
        elif route == "/patient-date":
            later = email.utils.formatdate(time.time() + 3600, usegmt=True)
            self.send_body(b"", code=503, headers={"Retry-After": later})
        elif route == "/gzip-bomb":
            self.send_body(GZIP_BOMB, headers={"Content-Encoding": "gzip", "Content-Type": "application/zip"})
        elif route == "/redirect":
            self.send_body(b"", code=302, headers={"Location": self.path.split("?to=", 1)[1]})
        elif route == "/loop":
            self.send_body(b"", code=302, headers={"Location": "/loop"})
        else:
            self.send_body(b"", code=404)

    def send_body(self, body: bytes, code: int = 200, length: int | None = None, headers: dict | None = None,
                  then_sleep: float = 0):
        self.send_response(code)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()
        time.sleep(then_sleep)


class Server(ThreadingHTTPServer):
    daemon_threads, block_on_close = True, False

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], ConnectionError):  # clients that gave up are expected
            super().handle_error(request, client_address)


@pytest.fixture(scope="module")
def server():
    httpd = Server(("127.0.0.1", 0), Handler)
    httpd.files, httpd.hits = {}, {}
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    httpd.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def limits(monkeypatch) -> IngestLimits:
    """The tests' limits: loopback allowed through the setting, short timeouts, quick retries."""
    for name, value in {"ALLOW_NETWORKS": "127.0.0.0/8", "RETRIES": "2", "BACKOFF_S": "0.01",
                        "READ_TIMEOUT_S": "0.5", "CONNECT_TIMEOUT_S": "1", "TOTAL_TIMEOUT_S": "10"}.items():
        monkeypatch.setenv(f"AVLORA_INGEST_{name}", value)
    return IngestLimits.from_env()


def fetch_fails(server, path: str, tmp_path: Path, limits: IngestLimits) -> str:
    server.hits.clear()
    dest = tmp_path / "download.zip"
    with pytest.raises(UserError) as error:
        download(server.base + path, dest, limits)
    assert list(tmp_path.iterdir()) == [], "a failed download left a file behind"
    return str(error.value)


def test_setting_allows_networks(limits):
    assert limits.retries == 2 and limits.read_timeout_s == 0.5
    assert is_allowed_address(ipaddress.ip_address("127.0.0.1"), limits.allowed_networks)
    default = IngestLimits().allowed_networks
    for address in ("127.0.0.1", "10.1.2.3", "192.168.0.1", "169.254.169.254", "100.64.0.1", "::1",
                    "fe80::1", "::ffff:127.0.0.1", "0.0.0.0", "224.0.0.1"):
        assert not is_allowed_address(ipaddress.ip_address(address), default), address
    assert is_allowed_address(ipaddress.ip_address("93.184.216.34"), default)
    allowing = replace(IngestLimits(), allow_networks="10.0.0.0/8, ::1/128").allowed_networks
    assert is_allowed_address(ipaddress.ip_address("10.1.2.3"), allowing)
    assert is_allowed_address(ipaddress.ip_address("::1"), allowing)


@pytest.mark.parametrize("path, retried", [("/flaky", 2), ("/busy", 2), ("/redirect?to=/files/ok", 1)])
def test_transient_failures_are_retried(server, tmp_path, limits, path, retried):
    server.files["ok"] = BODY
    server.hits.clear()
    seen = []
    size = download(server.base + path, tmp_path / "a.bin", limits, on_bytes=lambda done, total: seen.append(done))
    assert size == len(BODY) and (tmp_path / "a.bin").read_bytes() == BODY
    assert server.hits[path] == retried and seen[-1] == len(BODY)


@pytest.mark.parametrize("code", [404, 403, 410])
def test_client_errors_are_not_retried(server, tmp_path, limits, code):
    url = f"{server.base}/status/{code}"
    message = fetch_fails(server, f"/status/{code}", tmp_path, limits)
    assert message == f"dataset download failed: HTTP {code} for {url}"
    assert server.hits[f"/status/{code}"] == 1


def test_server_errors_fail_after_retries(server, tmp_path, limits):
    message = fetch_fails(server, "/status/503", tmp_path, limits)
    assert message == f"dataset download failed: HTTP 503 (after 3 attempts) for {server.base}/status/503"
    assert server.hits["/status/503"] == 3


def test_stalled_body_times_out(server, tmp_path, limits):
    assert "timed out waiting for the server (after 3 attempts)" in fetch_fails(server, "/stall", tmp_path, limits)


def test_slow_body_hits_the_total_timeout(server, tmp_path, limits):
    message = fetch_fails(server, "/trickle", tmp_path, replace(limits, total_timeout_s=0.5))
    assert message == f"dataset download failed: took longer than 0.5 s for {server.base}/trickle"


def test_short_body_is_an_incomplete_download(server, tmp_path, limits):
    message = fetch_fails(server, "/short", tmp_path, limits)
    assert message.startswith("dataset download failed: connection error (peer closed connection without sending "
                              "complete message body (received 500 bytes, expected 1000)) (after 3 attempts)")


def test_huge_declared_size_is_refused_at_once(server, tmp_path, limits):
    message = fetch_fails(server, "/huge", tmp_path, replace(limits, max_download_bytes=1 << 20))
    assert message == (f"dataset download failed: the file is {10**12} bytes, over the limit of {1 << 20} bytes "
                       f"for {server.base}/huge")
    assert server.hits["/huge"] == 1


def test_undeclared_size_is_enforced_while_streaming(server, tmp_path, limits):
    message = fetch_fails(server, "/endless", tmp_path, replace(limits, max_download_bytes=1 << 20))
    assert message == (f"dataset download failed: the file is over the limit of {1 << 20} bytes "
                       f"for {server.base}/endless")


@pytest.mark.parametrize("target", ["http://10.0.0.1/x.zip", "http://169.254.169.254/latest/meta-data",
                                    "http://[::1]:1/x.zip", "http://[::ffff:192.168.1.1]/x.zip"])
def test_redirect_to_a_private_address_is_refused(server, tmp_path, limits, target):
    message = fetch_fails(server, f"/redirect?to={target}", tmp_path, limits)
    assert "resolves to the non-public address" in message and "which is refused" in message
    assert message.endswith(f"for {server.base}/redirect?to={target}")


def test_loopback_is_refused_without_the_setting(server, tmp_path, limits):
    message = fetch_fails(server, "/files/ok", tmp_path, replace(limits, allow_networks=""))
    assert message.startswith("dataset download failed: host 127.0.0.1 resolves to the non-public address "
                              "127.0.0.1, which is refused")
    assert server.hits == {}


@pytest.fixture(scope="module")
def https_server(tmp_path_factory):
    """The same handler over TLS, with a self-signed certificate for 127.0.0.1 (no CA vouches for it)."""
    folder = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(folder / "key.pem"),
                    "-out", str(folder / "cert.pem")], check=True, capture_output=True)
    httpd = Server(("127.0.0.1", 0), Handler)
    httpd.files, httpd.hits = {"ok": BODY}, {}
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    httpd.base = f"https://127.0.0.1:{httpd.server_address[1]}"
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def test_https_certificates_are_verified(https_server, tmp_path, limits):
    """Every download shares one TLS context (built once, for speed); it still checks certificates:
    a self-signed one is refused at once (retrying meets the same certificate)."""
    message = fetch_fails(https_server, "/files/ok", tmp_path, limits)
    assert message.startswith("dataset download failed: the server's TLS certificate is not trusted (")
    assert "self-signed certificate" in message and "attempts" not in message
    assert message.endswith(f"for {https_server.base}/files/ok")


def test_redirect_loops_are_bounded(server, tmp_path, limits):
    message = fetch_fails(server, "/loop", tmp_path, replace(limits, max_redirects=3))
    assert message == f"dataset download failed: more than 3 redirects for {server.base}/loop"
    assert server.hits["/loop"] == 4


def test_a_dripping_download_is_abandoned_within_the_speed_window(server, tmp_path, limits):
    slow = replace(limits, min_bytes_per_s=1000, slow_window_s=1.0)
    message = fetch_fails(server, "/drip", tmp_path, slow)
    assert re.fullmatch(r"dataset download failed: too slow: \d+ bytes/s over the last 1\.\d s, under the minimum "
                        rf"of 1000 bytes/s for {server.base}/drip", message), message
    assert server.hits["/drip"] == 1, "a slow server is not retried"


def test_a_huge_retry_after_is_not_waited_for(server, tmp_path, limits):
    capped = replace(limits, max_retry_wait_s=1.0)
    message = fetch_fails(server, "/patient", tmp_path, capped)
    assert server.hits["/patient"] == 1, "refused at once: not waited for, not retried"
    assert message == ("dataset download failed: HTTP 429 (the server asks to retry after 100000 s, longer than "
                       f"the 1 s ingest waits) for {server.base}/patient")
    message = fetch_fails(server, "/patient-date", tmp_path, capped)
    assert re.search(r"HTTP 503 \(the server asks to retry after 3\d{3}(\.\d+)? s, longer than the 1 s", message)


def test_retries_stop_when_the_retry_budget_is_spent(server, tmp_path, limits):
    budget = replace(limits, retries=10, backoff_s=0.4, retry_budget_s=1.0)  # waits 0.4, then 0.8 > 0.6 left
    message = fetch_fails(server, "/status/503", tmp_path, budget)
    assert message == f"dataset download failed: HTTP 503 (after 2 attempts) for {server.base}/status/503"
    assert server.hits["/status/503"] == 2


def test_a_gzip_bomb_is_refused_before_it_is_decoded(server, tmp_path, limits):
    decoded_size = int.from_bytes(GZIP_BOMB[-4:], "little")  # gzip's trailer: the decoded size
    assert len(GZIP_BOMB) < 100_000 and decoded_size == 64 << 20
    message = fetch_fails(server, "/gzip-bomb", tmp_path, replace(limits, max_download_bytes=8 << 20))
    assert message == ("dataset download failed: the server sent a gzip-encoded body although an unencoded one "
                       "was requested; encoded bodies are refused (they can expand without bound) "
                       f"for {server.base}/gzip-bomb")
    assert server.hits["/gzip-bomb"] == 1


def test_error_texts_hide_credentials_and_control_characters(server, tmp_path, limits):
    host = server.base.removeprefix("http://")
    with pytest.raises(UserError) as error:
        download(f"http://alice:s3cret@{host}/status/404", tmp_path / "a.bin", limits)
    assert str(error.value) == f"dataset download failed: HTTP 404 for http://***@{host}/status/404"
    with pytest.raises(UserError) as error:
        download(f"http://bob:pw@{host}/files/a\r\nSet-Cookie: x\x1b[31m", tmp_path / "a.bin", limits)
    message = str(error.value)
    assert "pw" not in message and not re.search(r"[\x00-\x1f]", message)
    assert message.endswith(f"for http://***@{host}/files/a%0D%0ASet-Cookie: x%1B[31m"), message
    with pytest.raises(UserError) as error:
        with stage.fetched("ftp://u:pw@h/x\x07", LocalStore(tmp_path / "store"), tmp_path / "a.bin", limits,
                           "validation[0] video", progress=lambda *args: None, checkpoint=None):
            pass
    assert str(error.value) == "validation[0] video: unsupported URL ftp://***@h/x%07 (use http://, https:// or upload://)"


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return write_clip(tmp_path_factory.mktemp("clips") / "walk.mp4", frames=9)


def test_stage_ingests_over_http_and_is_idempotent(server, tmp_path, limits, clip):
    zip_path = zip_files(tmp_path / "data.zip", {"walk.mp4": clip, "walk.txt": "steps", "notes.pdf": b"%PDF"})
    server.files.update({"data.zip": zip_path.read_bytes(), "silent.mp4": clip.read_bytes()})
    server.hits.clear()
    params = V2AParams(training_data_url=f"{server.base}/files/data.zip",
                       validation=[{"prompt": "steps", "video_url": f"{server.base}/files/silent.mp4"}])
    store = LocalStore(tmp_path / "store")
    ctx = JobContext.for_test("job7", params, store, stage="ingest")
    uri = stage.run(ctx)
    assert uri == "store://jobs/job7/ingest/manifest.pb"
    manifest = dataset_pb2.Manifest.FromString(store.read_bytes(uri))
    assert [(item.name, item.kind) for item in manifest.files] == [("walk.mp4", dataset_pb2.VIDEO),
                                                                   ("walk.txt", dataset_pb2.CAPTION)]
    assert store.read_bytes(manifest.files[0].uri) == clip.read_bytes()
    assert store.read_bytes(manifest.validation[0].video_uri) == clip.read_bytes()
    assert manifest.validation[0].prompt == "steps"
    assert manifest.archive_uri == params.training_data_url
    progress = [event.progress for event in ctx.events]
    assert any(p.unit == "bytes" and p.done == len(server.files["data.zip"]) for p in progress)
    assert any(p.unit == "files" and p.done == p.total == 2 for p in progress)
    assert any(p.message == "ignored notes.pdf: not a video or a caption" for p in progress)
    files_before = sorted(store.root.rglob("*"))
    assert stage.run(JobContext.for_test("job7", params, store, stage="ingest")) == uri  # redelivery
    assert sorted(store.root.rglob("*")) == files_before and sum(server.hits.values()) == 2


def test_validation_media_download_failure_names_the_entry(server, tmp_path, limits, clip):
    server.files["data.zip"] = zip_files(tmp_path / "data.zip", {"walk.mp4": clip}).read_bytes()
    params = AV2AVParams(training_data_url=f"{server.base}/files/data.zip",
                         validation=[{"reference_video_url": f"{server.base}/files/data.zip",
                                      "reference_audio_url": f"{server.base}/status/404"}])
    store = LocalStore(tmp_path / "store")
    with pytest.raises(UserError) as error:
        stage.run(JobContext.for_test("job8", params, store, stage="ingest"))
    assert str(error.value) == f"validation[0] audio download failed: HTTP 404 for {server.base}/status/404"
    with pytest.raises(ValueError, match="must be an http://, https:// or upload:// URL"):  # refused at create
        V2AParams(training_data_url=f"{server.base}/files/data.zip", validation=[{"video_url": "file:///etc/passwd"}])
    # ingest refuses it too (a work item from before that check, or from another producer)
    params = V2AParams(training_data_url=f"{server.base}/files/data.zip",
                       validation=[V2AValidation.model_construct(prompt="", video_url="file:///etc/passwd")])
    with pytest.raises(UserError, match=r"^validation\[0\] video: unsupported URL file:///etc/passwd"):
        stage.run(JobContext.for_test("job9", params, store, stage="ingest"))


def test_cancelled_job_stops_the_download(server, tmp_path, limits):
    server.files["big"] = bytes(4 << 20)
    store = LocalStore(tmp_path / "store")
    params = V2AParams(training_data_url=f"{server.base}/files/big")
    ctx = JobContext.for_test("job10", params, store, stage="ingest")
    ctx.cancel_flag.set()
    with pytest.raises(JobCancelled):
        stage.run(ctx)
    assert store.list("jobs/job10") == [] and not list(Path(ctx.settings.scratch).glob("job10-*"))
