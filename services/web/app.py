"""The jobs' web page (Starlette + Jinja2): a thin adapter over the public JobService (and ingest's
Upload for the form's zip), called with the signed-in user's own API key. It holds no privilege and
no state: the key lives in an HttpOnly, SameSite=Strict cookie; every POST carries a CSRF token
that must match a second cookie (double submit) and, when the browser sends one, an Origin of this
site."""

import functools
import hashlib
import hmac
import mimetypes
import re
import secrets
import time
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from urllib.parse import quote, urlencode

import grpc
import jinja2
from google.protobuf import json_format
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.responses import PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from avlora import metrics
from avlora.job_state import TERMINAL, state_label, state_name
from avlora.params import MODES
from avlora.v1 import jobs_pb2, jobs_pb2_grpc, stages_pb2, stages_pb2_grpc
from services.web.forms import field_of, form_fields, read_form
from services.web.plot import loss_plot
from services.web.settings import WebSettings

HERE = Path(__file__).parent
KEY_COOKIE, CSRF_COOKIE = "avlora_key", "avlora_csrf"
PAGE_SIZE, MAX_PAGE_SIZE = 20, 100   # jobs per page of the list (?size=N)
LOG_LINES = 300
CHUNK = 1024 * 1024
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self'; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = [(b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"same-origin"), (b"x-frame-options", b"DENY")]
# The files an error names (file names without spaces: the error is shown whole beside them).
FILE_NAME = re.compile(r"[^\s;,'\"]+\.(?:mp4|mov|avi|mkv|webm|m4v|wav|mp3|flac|ogg|txt|zip)\b", re.I)
RANGE = re.compile(r"bytes=(\d*)-(\d*)")
STATES = [state_name(s) for s in jobs_pb2.JobState.values() if s]


class SecurityHeaders:
    """CSP and friends on every response."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        async def sending(message):
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + SECURITY_HEADERS
            await send(message)
        await self.app(scope, receive, sending if scope["type"] == "http" else send)


class RequestMetrics:
    """Counts and times every request by its route's path template (never the path: job ids would
    make a series each)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, code = time.monotonic(), [500]

        async def sending(message):
            if message["type"] == "http.response.start":
                code[0] = message["status"]
            await send(message)
        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get("route")
            name = getattr(route, "path", "other")
            metrics.HTTP_REQUESTS.labels(name, str(code[0])).inc()
            metrics.HTTP_SECONDS.labels(name).observe(time.monotonic() - started)


def auth(key: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {key}")]


def when(stamp) -> str:
    return stamp.ToDatetime(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC") if stamp.seconds else ""


def duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min {secs} s" if minutes else f"{secs} s"


def progress_view(job: jobs_pb2.Job) -> dict:
    p = job.progress
    percent = round(100 * p.done / p.total) if p.total else (100 if job.state == jobs_pb2.SUCCEEDED else 0)
    return {"percent": min(100, percent), "stage": p.stage, "counts": f"{p.done}/{p.total} {p.unit}" if p.total else "",
            "eta": duration(p.eta_seconds) if p.eta_seconds and job.state not in TERMINAL else "",
            "message": p.message}


def outputs_view(job: jobs_pb2.Job) -> list[dict]:
    """Every output with its file name and, for audio, video and image files (any preview, whatever
    its field), how the page shows it inline."""
    items = []
    for field, uri in ((f.name, v) for f, v in job.outputs.ListFields() if isinstance(v, str) and v):
        name = PurePosixPath(uri).name
        mime = mimetypes.guess_type(name)[0] or "application/octet-stream"
        kind = mime.split("/")[0] if mime.split("/")[0] in ("audio", "video", "image") else ""
        items.append({"field": field, "name": name, "mime": mime, "player": kind})
    return items


def comparisons(outputs: list[dict]) -> tuple[list[tuple[dict, dict]], list[dict]]:
    """The previews paired with the base model's rendering of the same samples (`<field>` and
    `<field>_base`), and the playable outputs left over."""
    by_field = {item["field"]: item for item in outputs if item["player"]}
    pairs = [(item, by_field[item["field"] + "_base"]) for item in by_field.values()
             if item["field"] + "_base" in by_field]
    paired = {item["field"] for pair in pairs for item in pair}
    return pairs, [item for item in by_field.values() if item["field"] not in paired]


def figures_view(job: jobs_pb2.Job) -> list[dict]:
    return [{"name": f.name, "source": f.source, "lufs": f"{f.loudness_lufs:.1f}", "peak": f"{f.peak_dbfs:.1f}",
             "clipped": f"{100 * f.clipped_share:.2f} %", "silence": f"{100 * f.silence_share:.0f} %",
             "sync": f"{f.sync_offset_ms:+.0f} ms" if f.sync_confidence else "",
             "confidence": f"{f.sync_confidence:.2f}"} for f in job.outputs.audio_figures]


def webhooks_view(history: jobs_pb2.JobHistory) -> list[dict]:
    return [{"type": d.type, "status": d.status, "url": d.url,
             "attempts": [(when(a.at), a.status_code or "", a.error) for a in d.attempts],
             "next": when(d.next_attempt_at) if d.HasField("next_attempt_at") else ""} for d in history.webhooks]


def timeline(history: jobs_pb2.JobHistory) -> list[dict]:
    now = datetime.now(timezone.utc).timestamp()
    rows = []
    for index, change in enumerate(history.states):
        end = history.states[index + 1].at if index + 1 < len(history.states) else (
            None if change.state in TERMINAL else now)
        rows.append({"state": state_name(change.state), "note": change.note,
                     "at": datetime.fromtimestamp(change.at, timezone.utc).strftime("%H:%M:%S"),
                     "took": duration(end - change.at) if end is not None else "",
                     "running": end == now})
    return rows


def validation_entries(schema) -> range:
    """The form's validation entries: as many as the schema allows."""
    field = schema.model_fields["validation"]
    return range(next(item.max_length for item in field.metadata if hasattr(item, "max_length")))


class Api:
    """The public gRPC services, reached with the user's key."""

    def __init__(self, settings: WebSettings):
        self.channels = [grpc.aio.insecure_channel(settings.api_addr),
                         grpc.aio.insecure_channel(settings.ingest_addr or settings.api_addr)]
        self.jobs = jobs_pb2_grpc.JobServiceStub(self.channels[0])
        self.ingest = stages_pb2_grpc.IngestServiceStub(self.channels[1])

    async def upload(self, key: str, upload) -> str:
        """Streams a file of the form to ingest; its upload:// reference."""
        digest = hashlib.sha256()

        async def chunks():
            first = True
            while block := await upload.read(CHUNK):
                digest.update(block)
                yield stages_pb2.UploadChunk(filename=PurePosixPath(upload.filename).name if first else "", data=block)
                first = False
            yield stages_pb2.UploadChunk(sha256=digest.hexdigest())
        return (await self.ingest.Upload(chunks(), metadata=auth(key), timeout=3600)).uri

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close()


def make_app(settings: WebSettings) -> Starlette:
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True)
    templates = Jinja2Templates(env=environment)
    api: Api | None = None

    def render(request, template: str, context: dict, status: int = 200) -> Response:
        token = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(24)
        response = templates.TemplateResponse(request, template, context | {
            "csrf": token, "signed_in": bool(request.cookies.get(KEY_COOKIE))}, status_code=status)
        response.headers["cache-control"] = "no-store"
        if request.cookies.get(CSRF_COOKIE) != token:
            response.set_cookie(CSRF_COOKIE, token, httponly=True, samesite="strict", secure=settings.secure_cookie)
        return response

    async def posted_form(request):
        """The form of a POST whose CSRF token matches its cookie and whose Origin (if any) is ours."""
        origin = request.headers.get("origin")
        if origin and origin != f"{request.url.scheme}://{request.url.netloc}":
            raise HTTPException(403, "cross-site request refused")
        form = await request.form(max_files=16)
        cookie = request.cookies.get(CSRF_COOKIE, "")
        if not cookie or not hmac.compare_digest(cookie.encode(), str(form.get("csrf", "")).encode()):
            raise HTTPException(403, "missing or wrong CSRF token: reload the page and try again")
        return form

    def to_login() -> Response:
        response = RedirectResponse("/login", 303)
        response.delete_cookie(KEY_COOKIE, samesite="strict")
        return response

    def signed_in(handler=None, *, media: bool = False):
        """The handler gets the user's key; without a session: the login page (media: 401)."""
        if handler is None:
            return functools.partial(signed_in, media=media)

        @functools.wraps(handler)
        async def wrapped(request):
            key = request.cookies.get(KEY_COOKIE)
            if not key:
                return PlainTextResponse("log in first", 401) if media else RedirectResponse("/login", 303)
            try:
                return await handler(request, key)
            except grpc.aio.AioRpcError as error:
                if error.code() == grpc.StatusCode.UNAUTHENTICATED:
                    return to_login()
                if error.code() == grpc.StatusCode.NOT_FOUND:
                    return render(request, "error.html", {"title": "Not found", "message": "No such job."}, 404)
                return render(request, "error.html", {"title": "The service did not answer",
                                                      "message": error.details() or error.code().name}, 502)
        return wrapped

    async def login(request):
        if request.method == "GET":
            return render(request, "login.html", {})
        form = await posted_form(request)
        key = str(form.get("api_key", "")).strip()
        try:
            await api.jobs.ListJobs(jobs_pb2.ListJobsRequest(page_size=1), metadata=auth(key), timeout=10)
        except grpc.aio.AioRpcError as error:
            message = ("unknown API key" if error.code() == grpc.StatusCode.UNAUTHENTICATED
                       else f"the service did not answer: {error.details()}")
            return render(request, "login.html", {"error": message}, 401)
        response = RedirectResponse("/jobs", 303)
        response.set_cookie(KEY_COOKIE, key, httponly=True, samesite="strict", secure=settings.secure_cookie)
        return response

    async def logout(request):
        await posted_form(request)
        return to_login()

    @signed_in
    async def jobs(request, key):
        state, mode, page, size = (request.query_params.get(name, "") for name in ("state", "mode", "page", "size"))
        size = min(int(size), MAX_PAGE_SIZE) if size.isdigit() and int(size) > 0 else PAGE_SIZE
        reply = await api.jobs.ListJobs(jobs_pb2.ListJobsRequest(
            page_size=size, page_token=page, mode=mode if mode in MODES else "",
            state=jobs_pb2.JobState.Value(state) if state in STATES else 0), metadata=auth(key), timeout=30)
        rows = [{"job": job, "label": state_label(job), "created": when(job.created_at),
                 "progress": progress_view(job), "ended": job.state in TERMINAL} for job in reply.jobs]
        filters = {"state": state if state in STATES else "", "mode": mode if mode in MODES else ""} | (
            {"size": size} if size != PAGE_SIZE else {})
        context = {"rows": rows, "filters": filters, "states": STATES, "modes": list(MODES),
                   "next": "/jobs?" + urlencode(filters | {"page": reply.next_page_token}) if reply.next_page_token else "",
                   "first": "/jobs?" + urlencode(filters) if page else "",
                   "live": "/jobs?" + urlencode(filters | {"page": page, "fragment": 1}),
                   "final": all(row["ended"] for row in rows)}
        return render(request, "_jobs_table.html" if request.query_params.get("fragment") else "jobs.html", context)

    @signed_in
    async def job(request, key):
        job_id = request.path_params["job_id"]
        job = await api.jobs.GetJob(jobs_pb2.GetJobRequest(job_id=job_id), metadata=auth(key), timeout=30)
        history = await api.jobs.GetJobHistory(jobs_pb2.GetJobRequest(job_id=job_id), metadata=auth(key), timeout=30)
        params = json_format.MessageToDict(getattr(job.params, job.mode), preserving_proto_field_name=True,
                                           always_print_fields_with_no_presence=True)
        context = {"job": job, "label": state_label(job), "ended": job.state in TERMINAL,
                   "progress": progress_view(job), "created": when(job.created_at), "params": params,
                   "timeline": timeline(history), "plot": loss_plot(list(history.points)),
                   "logs": [(datetime.fromtimestamp(line.at, timezone.utc).strftime("%H:%M:%S"), line.stage,
                             line.message) for line in history.logs[-LOG_LINES:]],
                   "named_files": list(dict.fromkeys(name.lstrip("(") for name in FILE_NAME.findall(job.error))),
                   "outputs": outputs_view(job), "figures": figures_view(job), "webhooks": webhooks_view(history)}
        context["pairs"], context["players"] = comparisons(context["outputs"])
        return render(request, "_job_live.html" if request.query_params.get("fragment") else "job.html", context)

    @signed_in(media=True)
    async def media(request, key):
        """An output over HTTP, with Range requests (206) for seeking in a preview."""
        job_id, name = request.path_params["job_id"], request.path_params["name"]
        match = RANGE.fullmatch(request.headers.get("range", "").strip())
        start, end = (int(match[1]) if match[1] else None, int(match[2]) if match[2] else None) if match else (None, None)
        if start is None and end is not None:   # the last `end` bytes: the size first
            probe = api.jobs.DownloadArtifact(jobs_pb2.DownloadArtifactRequest(
                job_id=job_id, name=name, offset=1 << 62), metadata=auth(key), timeout=30)
            size = (await probe.read()).size
            start, end = max(0, size - end), None
        if start is not None and end is not None and end < start:
            start = end = None   # not a satisfiable range we understand: the whole file
        call = api.jobs.DownloadArtifact(jobs_pb2.DownloadArtifactRequest(
            job_id=job_id, name=name, offset=start or 0, length=(end - start + 1) if end is not None else 0),
            metadata=auth(key), timeout=3600)
        first = await call.read()
        size, filename = first.size, first.name
        headers = {"accept-ranges": "bytes", "cache-control": "private, no-store"}
        if request.query_params.get("download"):
            headers["content-disposition"] = f"attachment; filename*=UTF-8''{quote(filename)}"
        mime = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        if start is not None and start >= size:
            call.cancel()
            return Response(status_code=416, headers=headers | {"content-range": f"bytes */{size}"})
        last = min(end if end is not None else size - 1, size - 1)
        if start is not None:
            headers["content-range"] = f"bytes {start}-{last}/{size}"
        headers["content-length"] = str(last - (start or 0) + 1)

        async def body():
            try:
                yield first.data
                while (chunk := await call.read()) is not grpc.aio.EOF:
                    yield chunk.data
            finally:
                call.cancel()
        return StreamingResponse(body(), status_code=206 if start is not None else 200, headers=headers,
                                 media_type=mime)

    @signed_in
    async def cancel(request, key):
        job_id = request.path_params["job_id"]
        if request.method == "GET":
            job = await api.jobs.GetJob(jobs_pb2.GetJobRequest(job_id=job_id), metadata=auth(key), timeout=30)
            return render(request, "cancel.html", {"job": job, "label": state_label(job),
                                                   "ended": job.state in TERMINAL})
        await posted_form(request)
        await api.jobs.CancelJob(jobs_pb2.CancelJobRequest(job_id=job_id), metadata=auth(key), timeout=30)
        return RedirectResponse(f"/jobs/{quote(job_id)}", 303)

    @signed_in
    async def usage(request, key):
        reply = await api.jobs.GetUsage(jobs_pb2.GetUsageRequest(), metadata=auth(key), timeout=30)
        return render(request, "usage.html", {"usage": reply, "state_name": state_name})

    def submit_context(mode: str, fields, errors: dict, form=None) -> dict:
        schema = MODES[mode]
        return {"mode": mode, "modes": list(MODES), "fields": fields, "errors": errors,
                "validation_fields": schema.validation_model().media_fields(),
                "validation_rule": schema.model_fields["validation"].description, "entries": validation_entries(schema),
                "dataset_rule": schema.model_fields["training_data_url"].description,
                "form": form or {}, "request_id": secrets.token_hex(16)}

    @signed_in
    async def submit(request, key):
        if request.method == "GET":
            mode = request.query_params.get("mode", "v2a")
            mode = mode if mode in MODES else "v2a"
            return render(request, "submit.html", submit_context(mode, form_fields(MODES[mode]), {}))
        form = await posted_form(request)
        mode = str(form.get("mode", ""))
        if mode not in MODES:
            raise HTTPException(400, "mode: unknown")
        schema = MODES[mode]
        fields, values, errors = read_form(schema, form)
        shown = {name: str(value) for name, value in form.items() if isinstance(value, str) and name != "csrf"}

        async def url_of(field: str, upload_name: str, url_name: str) -> str:
            upload = form.get(upload_name)
            if upload is not None and not isinstance(upload, str) and upload.filename:
                try:
                    shown[url_name] = await api.upload(key, upload)
                except grpc.aio.AioRpcError as error:
                    if error.code() == grpc.StatusCode.UNAUTHENTICATED:
                        raise
                    errors[field] = f"{field}: the upload was refused: {error.details()}"
            return shown.get(url_name, "").strip()

        values["training_data_url"] = await url_of("training_data_url", "dataset", "training_data_url")
        if not values["training_data_url"] and "training_data_url" not in errors:
            errors["training_data_url"] = "training_data_url: choose a .zip to upload or give its URL"
        values["validation"] = []
        for index in validation_entries(schema):
            entry = {"prompt": shown.get(f"validation.{index}.prompt", "")}
            for name in schema.validation_model().media_fields():
                url = await url_of("validation", f"validation.{index}.{name}.file", f"validation.{index}.{name}")
                if url:
                    entry[name] = url
            if entry["prompt"] or len(entry) > 1:
                values["validation"].append(entry)
        if not errors:
            try:
                job = await api.jobs.CreateJob(jobs_pb2.CreateJobRequest(
                    params=schema.message(values), request_id=shown.get("request_id", "")),
                    metadata=auth(key), timeout=60)
                return RedirectResponse(f"/jobs/{quote(job.id)}", 303)
            except grpc.aio.AioRpcError as error:
                if error.code() not in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.ALREADY_EXISTS):
                    raise
                for message in error.details().split("; "):
                    errors.setdefault(field_of(message, [f.name for f in fields] + ["training_data_url", "validation"]),
                                      message)
        return render(request, "submit.html", submit_context(mode, fields, errors, shown), 400)

    async def health(request):
        return PlainTextResponse("ok")

    async def home(request):
        return RedirectResponse("/jobs", 303)

    @asynccontextmanager
    async def lifespan(app):
        nonlocal api
        api = Api(settings)
        yield
        await api.close()

    routes = [
        Route("/", home), Route("/healthz", health),
        Route("/login", login, methods=["GET", "POST"]), Route("/logout", logout, methods=["POST"]),
        Route("/jobs", jobs), Route("/jobs/{job_id}", job),
        Route("/jobs/{job_id}/files/{name}", media),
        Route("/jobs/{job_id}/cancel", cancel, methods=["GET", "POST"]),
        Route("/usage", usage), Route("/submit", submit, methods=["GET", "POST"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static")]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(RequestMetrics)
    return app
