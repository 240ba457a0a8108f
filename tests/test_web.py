"""The jobs' web page (services/web) over HTTP against a real stack (`avlora up`'s Stack: nats, the
ledger, the stages and the page): login and its cookie, CSRF refusals, the CSP, escaping of user
strings, 404 across tenants, Range requests on the media, the form generated from the schema, and
the public API's GetJobHistory the page is built on."""

import io
import json
import re
import secrets
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import httpx
import pytest

from avlora.demo_data import write_demo_dataset
from avlora.params import MODES, field_rules
from avlora.v1 import jobs_pb2, params_pb2
from media import write_clip
from services.web.forms import NOT_FIELDS
from web_stack import SMALL, bearer, web  # noqa: F401  (web: a fixture)

@pytest.fixture(scope="module")
def trained(web, tmp_path_factory):
    """A v2a job submitted through the page's form (the demo zip uploaded), run to its end."""
    client = web.login(web.own)
    data = write_demo_dataset("v2a", tmp_path_factory.mktemp("data") / "demo.zip", clips=3, frames=9, size=(64, 64))
    reply = client.post("/submit", data={"csrf": client.cookies["avlora_csrf"], "mode": "v2a",
                                         "request_id": secrets.token_hex(8), **SMALL},
                        files={"dataset": ("demo.zip", data.read_bytes(), "application/zip")})
    assert reply.status_code == 303, reply.text
    job_id = reply.headers["location"].rsplit("/", 1)[1]
    job = web.wait_ended(job_id, web.own)
    assert job.state == jobs_pb2.SUCCEEDED, job.error
    return job


def test_the_stack_serves_the_page_and_writes_its_url(web):
    assert web.url.startswith("http://127.0.0.1:")
    assert httpx.get(f"{web.url}/healthz", trust_env=False).text == "ok"


def test_without_a_session_the_page_asks_to_log_in_and_serves_no_media(web, trained):
    client = web.client()
    for path in ("/jobs", "/usage", "/submit", f"/jobs/{trained.id}", f"/jobs/{trained.id}/cancel"):
        reply = client.get(path)
        assert reply.status_code == 303 and reply.headers["location"] == "/login", path
    reply = client.get(f"/jobs/{trained.id}/files/audio")
    assert reply.status_code == 401 and b"RIFF" not in reply.content
    assert "API key" in client.get("/login").text


def test_login_keeps_the_key_in_an_httponly_strict_cookie_never_in_a_url_or_log(web):
    client = web.client()
    client.get("/login")
    wrong = client.post("/login", data={"csrf": client.cookies["avlora_csrf"], "api_key": "avl_wrong"})
    assert wrong.status_code == 401 and "unknown API key" in wrong.text and "avlora_key" not in wrong.headers.get(
        "set-cookie", "")
    reply = client.post("/login", data={"csrf": client.cookies["avlora_csrf"], "api_key": web.own})
    cookie = next(c for c in reply.headers.get_list("set-cookie") if c.startswith("avlora_key="))
    flags = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "samesite=strict", "path=/"} <= flags
    assert web.own not in reply.headers["location"]
    page = client.get("/jobs")
    assert page.status_code == 200 and web.own not in page.text
    logged_out = client.post("/logout", data={"csrf": client.cookies["avlora_csrf"]})
    assert logged_out.status_code == 303 and 'avlora_key=""' in logged_out.headers["set-cookie"]
    assert client.get("/jobs").headers["location"] == "/login"
    log = (web.stack.data_dir / "logs" / "web.log").read_text()
    assert "POST /login" in log and web.own not in log


def test_every_response_carries_the_csp_and_the_page_loads_nothing_from_elsewhere(web, trained):
    client = web.login(web.own)
    for path in ("/login", "/jobs", f"/jobs/{trained.id}", "/usage", "/submit", "/static/style.css",
                 f"/jobs/{trained.id}/files/audio", "/jobs/nope"):
        reply = client.get(path)
        csp = reply.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp, path
        assert reply.headers["x-content-type-options"] == "nosniff"
        if reply.headers["content-type"].startswith("text/html"):
            assert not re.search(r"""(src|href|action)=["']?(https?:)?//""", reply.text), path
            assert "<script>" not in reply.text and " style=" not in reply.text  # nothing inline for the CSP to allow


def test_state_changing_requests_without_the_csrf_token_are_refused(web):
    client = web.login(web.own)
    job = web.jobs.CreateJob(jobs_pb2.CreateJobRequest(params=params_pb2.JobParams(v2a=params_pb2.V2AParams(
        training_data_url="https://example.invalid/d.zip"))), metadata=bearer(web.own))
    token = client.cookies["avlora_csrf"]
    for path, data in ((f"/jobs/{job.id}/cancel", {}), ("/logout", {}), ("/submit", {"mode": "v2a", **SMALL}),
                       ("/login", {"api_key": web.own})):
        for sent, headers in (({}, {}), ({"csrf": "forged"}, {}),
                              ({"csrf": token}, {"origin": "https://evil.example"})):
            reply = client.post(path, data=data | sent, headers=headers)
            assert reply.status_code == 403, (path, sent, headers)
    assert web.job(job.id, web.own).state != jobs_pb2.CANCELLED
    assert client.get("/jobs").status_code == 200  # still logged in: the forged logout did nothing
    assert [j.id for j in web.jobs.ListJobs(jobs_pb2.ListJobsRequest(), metadata=bearer(web.own)).jobs].count(job.id) == 1


def test_cancel_asks_for_confirmation_then_cancels(web):
    client = web.login(web.own)
    job = web.jobs.CreateJob(jobs_pb2.CreateJobRequest(params=params_pb2.JobParams(v2a=params_pb2.V2AParams(
        training_data_url="https://example.invalid/d.zip"))), metadata=bearer(web.own))
    confirm = client.get(f"/jobs/{job.id}/cancel")
    assert confirm.status_code == 200 and "Yes, cancel the job" in confirm.text
    assert web.job(job.id, web.own).state != jobs_pb2.CANCELLED  # asking changed nothing
    reply = client.post(f"/jobs/{job.id}/cancel", data={"csrf": client.cookies["avlora_csrf"]})
    assert reply.status_code == 303 and reply.headers["location"] == f"/jobs/{job.id}"
    assert web.job(job.id, web.own).state == jobs_pb2.CANCELLED
    page = client.get(f"/jobs/{job.id}").text
    assert 'id="state">CANCELLED' in page and "cancelled by the tenant" in page and 'id="cancel"' not in page


def test_user_strings_are_escaped(web, tmp_path):
    """A trigger phrase, a prompt and a file name inside the zip (which the job's error names) that
    are markup come back as text."""
    client = web.login(web.own)
    clip = write_clip(tmp_path / "v.mp4", frames=9)
    evil = "<script>alert(1)</script>"
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr(f"{evil}.mp4", b"not a video")
        zipped.writestr("<img src=x onerror=alert(2)>.mp4", b"not a video either")
    reply = client.post("/submit", data={
        "csrf": client.cookies["avlora_csrf"], "mode": "v2a", "request_id": secrets.token_hex(8), **SMALL,
        "trigger_phrase": evil, "validation.0.prompt": "<b onmouseover=alert(3)>x</b>",
        },
        files={"dataset": ("<i>name</i>.zip", archive.getvalue(), "application/zip"),
               "validation.0.video_url.file": ("<u>v</u>.mp4", clip.read_bytes(), "video/mp4")})
    assert reply.status_code == 303, reply.text
    job_id = reply.headers["location"].rsplit("/", 1)[1]
    job = web.wait_ended(job_id, web.own, timeout=120)
    assert job.state == jobs_pb2.FAILED and evil in job.error, job.error
    page = client.get(f"/jobs/{job_id}").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and evil not in page
    assert "<img src=x" not in page and "<b onmouseover" not in page and "&lt;b onmouseover=alert(3)&gt;" in page
    assert re.search(r'<code class="file">&lt;script&gt;alert\(1\)&lt;/script&gt;\.mp4</code>', page)  # the files named
    assert evil not in client.get("/jobs").text


def test_another_tenant_gets_404_for_the_job_page_and_its_media(web, trained):
    stranger = web.login(web.other)
    for path in (f"/jobs/{trained.id}", f"/jobs/{trained.id}/files/audio", f"/jobs/{trained.id}/cancel",
                 f"/jobs/{trained.id}?fragment=1"):
        reply = stranger.get(path)
        assert reply.status_code == 404 and b"RIFF" not in reply.content, path
    reply = stranger.post(f"/jobs/{trained.id}/cancel", data={"csrf": stranger.cookies["avlora_csrf"]})
    assert reply.status_code == 404
    assert trained.id not in stranger.get("/jobs").text and trained.id not in stranger.get("/usage").text
    with pytest.raises(grpc.RpcError) as error:
        web.jobs.GetJobHistory(jobs_pb2.GetJobRequest(job_id=trained.id), metadata=bearer(web.other))
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


def test_media_supports_range_requests(web, trained):
    client = web.login(web.own)
    whole = b"".join(c.data for c in web.jobs.DownloadArtifact(jobs_pb2.DownloadArtifactRequest(
        job_id=trained.id, name="audio"), metadata=bearer(web.own)))
    size = len(whole)
    assert size > 1000 and whole[:4] == b"RIFF"
    full = client.get(f"/jobs/{trained.id}/files/audio")
    assert full.status_code == 200 and full.content == whole and full.headers["accept-ranges"] == "bytes"
    assert full.headers["content-type"].startswith("audio/") and int(full.headers["content-length"]) == size
    for header, start, end in (("bytes=10-99", 10, 99), ("bytes=1000-", 1000, size - 1),
                               ("bytes=-50", size - 50, size - 1), (f"bytes=5-{size + 100}", 5, size - 1)):
        part = client.get(f"/jobs/{trained.id}/files/audio", headers={"range": header})
        assert part.status_code == 206, header
        assert part.headers["content-range"] == f"bytes {start}-{end}/{size}", header
        assert part.content == whole[start:end + 1], header
    past = client.get(f"/jobs/{trained.id}/files/audio", headers={"range": f"bytes={size}-"})
    assert past.status_code == 416 and past.headers["content-range"] == f"bytes */{size}"
    download = client.get(f"/jobs/{trained.id}/files/lora_file?download=1")
    assert download.headers["content-disposition"] == "attachment; filename*=UTF-8''lora.safetensors"
    assert client.get(f"/jobs/{trained.id}/files/nothing").status_code == 404


def test_the_job_page_shows_history_plot_timeline_logs_outputs_and_preview(web, trained):
    history = web.jobs.GetJobHistory(jobs_pb2.GetJobRequest(job_id=trained.id), metadata=bearer(web.own))
    assert [jobs_pb2.JobState.Name(s.state) for s in history.states] == [
        "QUEUED", "INGESTING", "PREPROCESSING", "TRAINING", "SUCCEEDED"]
    assert [s.at for s in history.states] == sorted(s.at for s in history.states)
    steps = [p for p in history.points if p.stage == "train" and p.unit == "steps"]
    assert steps[-1].done == steps[-1].total == 100 and all(p.loss > 0 for p in steps)
    assert steps[-1].validation_loss > 0 and steps[0].baseline_validation_loss > 0
    assert any("untrained validation loss" in line.message for line in history.logs)

    page = web.login(web.own).get(f"/jobs/{trained.id}").text
    train = re.search(r'<polyline class="train" points="([^"]+)"', page)[1].split()
    validation = re.search(r'<polyline class="validation" points="([^"]+)"', page)[1].split()
    assert len(train) == len(steps) and len(validation) >= 2
    assert '<line class="baseline"' in page and ">step</text>" in page and ">loss</text>" in page
    assert f"untrained {steps[0].baseline_validation_loss:.4f}" in page
    timeline = re.search(r'<table class="timeline".*?</table>', page, re.S)[0]
    assert [s for s in re.findall(r"<tr><td>([A-Z]+)", timeline)] == [
        "QUEUED", "INGESTING", "PREPROCESSING", "TRAINING", "SUCCEEDED"]
    assert re.search(r"<td>\d+ s</td>", timeline)  # durations
    assert "untrained validation loss" in re.search(r'<pre class="log" id="log">(.*?)</pre>', page, re.S)[1]
    # the LoRA's preview beside the base model's, for the soundtrack and for it on its picture
    pairs = dict(re.findall(r'<div class="comparison" data-pair="(\w+)">(.*?)</div>', page, re.S))
    assert set(pairs) == {"audio", "preview_video"}, pairs
    assert f'<audio controls preload="metadata" src="/jobs/{trained.id}/files/audio"' in pairs["audio"]
    assert f'src="/jobs/{trained.id}/files/audio_base"' in pairs["audio"]
    assert f'<video controls preload="metadata" src="/jobs/{trained.id}/files/preview_video_base"' in \
        pairs["preview_video"]
    assert f'<img src="/jobs/{trained.id}/files/spectrograms"' in page
    figures = re.search(r'<table class="figures">(.*?)</table>', page, re.S)[1]
    rows = re.findall(r"<tr><td>([^<]*)</td><td>(\w+)</td><td>(-?[\d.]+)</td>", figures)
    assert {source for _, source, _ in rows} == {"lora", "base", "training"}
    assert len(rows) == len(trained.outputs.audio_figures)
    assert 'id="webhooks"' not in page  # no webhook_url: no deliveries
    for field in ("lora_file", "lora_comfyui_file", "config_file", "audio"):
        assert f'href="/jobs/{trained.id}/files/{field}?download=1"' in page
    assert "billed 100 units" in page and 'id="cancel"' not in page
    assert "data-final" in web.login(web.own).get(f"/jobs/{trained.id}?fragment=1").text  # live updates stop


def test_webhook_deliveries_are_in_the_jobs_history_and_on_its_page(web):
    received = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        request = jobs_pb2.CreateJobRequest(
            params=params_pb2.JobParams(v2a=params_pb2.V2AParams(training_data_url="http://127.0.0.1:9/gone.zip")),
            webhook_url=f"http://127.0.0.1:{server.server_port}/hook")
        job = web.jobs.CreateJob(request, metadata=bearer(web.own))
        assert web.wait_ended(job.id, web.own).state == jobs_pb2.FAILED
        deadline = time.monotonic() + 120
        while True:
            history = web.jobs.GetJobHistory(jobs_pb2.GetJobRequest(job_id=job.id), metadata=bearer(web.own))
            if history.webhooks and history.webhooks[-1].type == "job.failed" and \
                    all(d.status == "delivered" for d in history.webhooks):
                break
            assert time.monotonic() < deadline, history.webhooks
            time.sleep(0.5)
    finally:
        server.shutdown()
    assert [d.message_id for d in history.webhooks] == [
        m.message_id for m in web.jobs.ListWebhookDeliveries(jobs_pb2.GetJobRequest(job_id=job.id),
                                                             metadata=bearer(web.own)).deliveries]
    assert all(d.attempts and d.attempts[-1].status_code == 204 for d in history.webhooks)
    assert [body["type"] for body in received][-1] == "job.failed"
    page = web.login(web.own).get(f"/jobs/{job.id}").text
    section = re.search(r'<section class="card" id="webhooks">(.*?)</section>', page, re.S)[1]
    assert "job.failed" in section and "delivered" in section and "· 204" in section
    other = web.jobs.GetJobHistory  # another tenant learns nothing of them
    with pytest.raises(grpc.RpcError) as refused:
        other(jobs_pb2.GetJobRequest(job_id=job.id), metadata=bearer(web.other))
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND


def test_jobs_list_filters_and_pages(web, trained):
    client = web.login(web.own)
    made = [web.jobs.CreateJob(jobs_pb2.CreateJobRequest(params=params_pb2.JobParams(av2av=params_pb2.AV2AVParams(
        training_data_url="https://example.invalid/d.zip"))), metadata=bearer(web.own)).id for _ in range(3)]
    for job_id in made:
        web.jobs.CancelJob(jobs_pb2.CancelJobRequest(job_id=job_id), metadata=bearer(web.own))
    av2av = client.get("/jobs", params={"mode": "av2av"}).text
    assert all(job_id[:12] in av2av for job_id in made) and trained.id[:12] not in av2av
    succeeded = client.get("/jobs", params={"state": "SUCCEEDED"}).text
    assert trained.id[:12] in succeeded and not any(job_id[:12] in succeeded for job_id in made)
    first = client.get("/jobs", params={"mode": "av2av", "state": "CANCELLED", "size": 2}).text
    shown = re.findall(r'href="/jobs/([0-9a-f]{32})"', first)
    assert len(shown) == 2
    next_page = re.search(r'href="(/jobs\?[^"]+)" id="next-page"', first)[1].replace("&amp;", "&")
    rest = re.findall(r'href="/jobs/([0-9a-f]{32})"', client.get(next_page).text)
    assert sorted(shown + rest) == sorted(made)


def test_usage_page_shows_units_and_cost_per_job_and_in_total(web, trained):
    usage = web.jobs.GetUsage(jobs_pb2.GetUsageRequest(), metadata=bearer(web.own))
    page = web.login(web.own).get("/usage").text
    assert f"{usage.total_units} units, total <strong>{usage.total_cost:.4f}</strong>" in page
    row = re.search(rf'href="/jobs/{trained.id}">.*?</tr>', page, re.S)[0]
    assert ">100<" in row and f">{100 * 0.0049:.4f}<" in row and ">SUCCEEDED<" in row


@pytest.mark.parametrize("mode", list(MODES))
def test_the_form_is_the_parameter_schema_with_its_rules(web, mode):
    page = web.login(web.own).get("/submit", params={"mode": mode}).text
    for name, field in MODES[mode].model_fields.items():
        if name in NOT_FIELDS:
            continue
        block = re.search(rf'<div class="field" id="field-{name}">(.*?)</div>', page, re.S)
        assert block and f'name="{name}"' in block[1], name
        rules = field_rules(field)
        if rules:
            assert rules.replace("<", "&lt;").replace(">", "&gt;") in block[1], name
    for index in range(2):
        for media in MODES[mode].validation_model().media_fields():
            assert f'name="validation.{index}.{media}.file"' in page and f'name="validation.{index}.{media}"' in page
    assert 'name="dataset"' in page and 'type="file"' in page


def test_a_refused_request_shows_the_servers_message_beside_its_field(web):
    client = web.login(web.own)
    before = len(web.jobs.ListJobs(jobs_pb2.ListJobsRequest(), metadata=bearer(web.own)).jobs)
    for mode, field, value, words in (("v2a", "number_of_steps", "50", "greater than or equal to 100"),
                                      ("av2av", "reference_downscale_factor", "5", "reference_downscale_factor: 5"),
                                      ("v2a", "learning_rate", "fast", "must be a number")):
        reply = client.post("/submit", data={
            "csrf": client.cookies["avlora_csrf"], "mode": mode, "request_id": secrets.token_hex(8),
            "training_data_url": "https://example.invalid/d.zip", **SMALL, field: value})
        assert reply.status_code == 400
        block = re.search(rf'<div class="field invalid" id="field-{field}">(.*?)</div>', reply.text, re.S)
        assert block and words in block[1] and f'value="{value}"' in block[1], (field, reply.text)
    missing = client.post("/submit", data={"csrf": client.cookies["avlora_csrf"], "mode": "v2a", **SMALL})
    assert missing.status_code == 400 and 'class="field invalid" id="field-training_data_url"' in missing.text
    assert len(web.jobs.ListJobs(jobs_pb2.ListJobsRequest(), metadata=bearer(web.own)).jobs) == before
