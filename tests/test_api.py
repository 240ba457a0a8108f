"""The public JobService through a real ledger process and nats-server (started by the Stack)."""

import contextlib
import json
import time
import uuid
from pathlib import Path

import grpc
import pytest

from avlora.auth import internal_metadata
from avlora.params import MAX_PROMPT_CHARS, MAX_TRIGGER_CHARS, MAX_URL_CHARS
from avlora.service import start_server
from avlora.settings import Settings
from avlora.v1 import jobs_pb2, jobs_pb2_grpc, ledger_pb2, ledger_pb2_grpc, params_pb2, stages_pb2, stages_pb2_grpc
from services.trainer.server import TrainerServicer

ADMIN = "admin-secret"


class InternalLedger:
    """The ledger's internal port, calling with the service credential (plus any metadata given)."""

    def __init__(self, channel, token):
        self.stub, self.token = ledger_pb2_grpc.LedgerServiceStub(channel), token

    def __getattr__(self, name):
        method = getattr(self.stub, name)
        return lambda request, metadata=(), **kw: method(request, metadata=internal_metadata(self.token) + list(metadata),
                                                         **kw)


@contextlib.contextmanager
def connected(info: dict):
    """(info, JobService stub, internal ledger) for a stack's information; closes the channels."""
    with grpc.insecure_channel(info["ledger_addr"]) as channel, \
            grpc.insecure_channel(info["ledger_internal_addr"]) as internal:
        yield info, jobs_pb2_grpc.JobServiceStub(channel), InternalLedger(internal, info["internal_token"])


def new_tenant(ledger: InternalLedger, name: str = "tenant") -> tuple[str, str]:
    """A tenant of its own (name, key), made with the admin key."""
    tenant = f"{name}-{uuid.uuid4().hex[:8]}"
    return tenant, ledger.CreateApiKey(ledger_pb2.CreateApiKeyRequest(tenant=tenant), metadata=bearer(ADMIN)).api_key


@pytest.fixture(scope="module")
def shared_stack(make_module_stack):
    """One ledger stack (NATS + ledger process) for the module's tests, each as a tenant of its own."""
    return make_module_stack(extra_env={"AVLORA_ADMIN_KEY": ADMIN}, services=("ledger",))


@pytest.fixture
def api(shared_stack):
    """The shared stack, with a fresh tenant's key as info["api_key"] (info["tenant"] its name)."""
    with connected(dict(shared_stack.info)) as (info, jobs, ledger):
        info["tenant"], info["api_key"] = new_tenant(ledger)
        yield info, jobs, ledger


@pytest.fixture
def own_api(make_stack):
    """A ledger stack of the test's own (its queue, logs and database are the test's alone)."""
    stack = make_stack(extra_env={"AVLORA_ADMIN_KEY": ADMIN}, services=("ledger",))
    with connected(stack.info | {"tenant": "local"}) as api:
        yield api


def bearer(key):
    return [("authorization", f"Bearer {key}")]


def listed_services(address):
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
    with grpc.insecure_channel(address) as channel:
        replies = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        return {service.name for service in next(replies).list_services_response.service}


def v2a_request(request_id="", **fields):
    return jobs_pb2.CreateJobRequest(request_id=request_id, params=params_pb2.JobParams(
        v2a=params_pb2.V2AParams(training_data_url="https://example.com/d.zip", **fields)))


def av2av_request(**fields):
    return jobs_pb2.CreateJobRequest(params=params_pb2.JobParams(
        av2av=params_pb2.AV2AVParams(training_data_url="https://example.com/d.zip", **fields)))


def test_every_call_needs_a_valid_key(api):
    info, jobs, _ = api
    for metadata in ([], bearer("avl_wrong"), [("authorization", "Basic abc")]):
        with pytest.raises(grpc.RpcError) as error:
            jobs.ListJobs(jobs_pb2.ListJobsRequest(), metadata=metadata)
        assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert jobs.ListJobs(jobs_pb2.ListJobsRequest(), metadata=bearer(info["api_key"])).jobs == []


def test_invalid_parameters_are_refused_with_the_field_and_rule_and_nothing_is_recorded(api):
    info, jobs, _ = api
    key = bearer(info["api_key"])
    seed_example = jobs_pb2.CreateJobRequest(params=params_pb2.JobParams(av2av=params_pb2.AV2AVParams(
        training_data_url="https://example.com/d.zip", reference_temporal_scale_factor=2)))
    for request, words in ((v2a_request(rank=12), "rank"), (seed_example, "reference_temporal_scale_factor: 2"),
                           (v2a_request(number_of_steps=50), "number_of_steps"),
                           (jobs_pb2.CreateJobRequest(), "exactly one of v2a or av2av")):
        with pytest.raises(grpc.RpcError) as error:
            jobs.CreateJob(request, metadata=key)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert words in error.value.details()
    assert jobs.ListJobs(jobs_pb2.ListJobsRequest(), metadata=key).jobs == []
    assert jobs.GetUsage(jobs_pb2.GetUsageRequest(), metadata=key).total_units == 0


def test_a_created_job_reports_its_effective_parameters(api):
    info, jobs, _ = api
    job = jobs.CreateJob(v2a_request(number_of_frames=100), metadata=bearer(info["api_key"]))
    assert job.state == jobs_pb2.QUEUED and job.mode == "v2a"
    assert job.params.v2a.number_of_frames == 97 and job.params.v2a.rank == 32
    assert job.unit_price == 0.0049 and job.billed_units == 0


def test_request_id_retry_returns_the_same_job(api):
    info, jobs, _ = api
    key = bearer(info["api_key"])
    first = jobs.CreateJob(v2a_request("retry-1"), metadata=key)
    again = jobs.CreateJob(v2a_request("retry-1"), metadata=key)
    assert first.id == again.id
    assert len(jobs.ListJobs(jobs_pb2.ListJobsRequest(), metadata=key).jobs) == 1


def test_tenants_are_isolated(api):
    info, jobs, ledger = api
    with pytest.raises(grpc.RpcError) as error:
        ledger.CreateApiKey(ledger_pb2.CreateApiKeyRequest(tenant="globex"), metadata=bearer("not-admin"))
    assert error.value.code() == grpc.StatusCode.PERMISSION_DENIED
    other = new_tenant(ledger, "globex")[1]
    mine = jobs.CreateJob(v2a_request(), metadata=bearer(info["api_key"]))
    for call, request in ((jobs.GetJob, jobs_pb2.GetJobRequest(job_id=mine.id)),
                          (jobs.CancelJob, jobs_pb2.CancelJobRequest(job_id=mine.id)),
                          (jobs.GetUsage, jobs_pb2.GetUsageRequest(job_id=mine.id))):
        with pytest.raises(grpc.RpcError) as error:
            call(request, metadata=bearer(other))
        assert error.value.code() == grpc.StatusCode.NOT_FOUND
    assert jobs.ListJobs(jobs_pb2.ListJobsRequest(), metadata=bearer(other)).jobs == []
    assert jobs.GetJob(jobs_pb2.GetJobRequest(job_id=mine.id), metadata=bearer(info["api_key"])).state == jobs_pb2.QUEUED


def test_cancel_is_idempotent_billed_zero_and_ends_watch(api):
    info, jobs, ledger = api
    key = bearer(info["api_key"])
    job = jobs.CreateJob(v2a_request(), metadata=key)
    watch = jobs.WatchJob(jobs_pb2.GetJobRequest(job_id=job.id), metadata=key, timeout=30)
    assert next(watch).state == jobs_pb2.QUEUED
    for _ in range(2):
        cancelled = jobs.CancelJob(jobs_pb2.CancelJobRequest(job_id=job.id), metadata=key)
        assert cancelled.state == jobs_pb2.CANCELLED and cancelled.billed_units == 0
    assert [update.state for update in watch][-1] == jobs_pb2.CANCELLED
    usage = jobs.GetUsage(jobs_pb2.GetUsageRequest(job_id=job.id), metadata=key)
    assert [(line.job_id, line.units, line.state) for line in usage.lines] == [(job.id, 0, jobs_pb2.CANCELLED)]
    events = ledger.ListJobEvents(ledger_pb2.ListJobEventsRequest(job_id=job.id)).events
    assert [event.event.WhichOneof("kind") for event in events] == ["cancelled"]
    with pytest.raises(grpc.RpcError) as error:
        jobs.CancelJob(jobs_pb2.CancelJobRequest(job_id="nope"), metadata=key)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


def test_the_public_port_serves_only_the_job_service(api):
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    info, _, _ = api
    with grpc.insecure_channel(info["ledger_addr"]) as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service="avlora.v1.JobService"))
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as error:  # not even with the right credential
            ledger_pb2_grpc.LedgerServiceStub(channel).Authenticate(
                ledger_pb2.AuthenticateRequest(api_key=info["api_key"]), metadata=internal_metadata(info["internal_token"]))
        assert error.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert listed_services(info["ledger_addr"]) == {
        "avlora.v1.JobService", "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"}
    assert "avlora.v1.LedgerService" in listed_services(info["ledger_internal_addr"])


def test_every_internal_ledger_rpc_needs_the_service_credential(api):
    info, _, _ = api
    calls = [("ListJobEvents", ledger_pb2.ListJobEventsRequest(job_id="x")),
             ("Authenticate", ledger_pb2.AuthenticateRequest(api_key=info["api_key"])),
             ("CreateApiKey", ledger_pb2.CreateApiKeyRequest(tenant="globex")),
             ("RecordUpload", ledger_pb2.RecordUploadRequest(upload_id="u1", tenant="local")),
             ("CheckUploads", ledger_pb2.CheckUploadsRequest(tenant="local", upload_ids=["u1"]))]
    assert {name for name, _ in calls} == set(ledger_pb2.DESCRIPTOR.services_by_name["LedgerService"].methods_by_name)
    refusals = [([], grpc.StatusCode.UNAUTHENTICATED), (bearer(info["api_key"]), grpc.StatusCode.UNAUTHENTICATED),
                (bearer(ADMIN), grpc.StatusCode.UNAUTHENTICATED),
                (internal_metadata("guessed") + bearer(ADMIN), grpc.StatusCode.PERMISSION_DENIED)]
    with grpc.insecure_channel(info["ledger_internal_addr"]) as channel:
        stub = ledger_pb2_grpc.LedgerServiceStub(channel)
        for name, request in calls:
            for metadata, code in refusals:
                with pytest.raises(grpc.RpcError) as error:
                    getattr(stub, name)(request, metadata=metadata)
                assert error.value.code() == code, (name, metadata)
        assert stub.Authenticate(ledger_pb2.AuthenticateRequest(api_key=info["api_key"]),
                                 metadata=internal_metadata(info["internal_token"])).tenant == info["tenant"]


async def test_the_trainer_status_needs_the_service_credential(tmp_path):
    settings = Settings(internal_token="the-token", data_dir=tmp_path)
    server, _, _, port = await start_server(settings, 0, [(stages_pb2_grpc.add_TrainerServiceServicer_to_server,
                                                           TrainerServicer(settings), "avlora.v1.TrainerService")])
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = stages_pb2_grpc.TrainerServiceStub(channel)
            for metadata, code in (([], grpc.StatusCode.UNAUTHENTICATED), (bearer("avl_tenant"), grpc.StatusCode.UNAUTHENTICATED),
                                   (internal_metadata("wrong"), grpc.StatusCode.PERMISSION_DENIED)):
                with pytest.raises(grpc.aio.AioRpcError) as error:
                    await stub.GetTrainerStatus(stages_pb2.TrainerStatusRequest(), metadata=metadata)
                assert error.value.code() == code
            reply = await stub.GetTrainerStatus(stages_pb2.TrainerStatusRequest(), metadata=internal_metadata("the-token"))
            assert reply.job_id == ""
    finally:
        await server.stop(None)


def test_oversize_text_and_bad_urls_are_refused_naming_the_field_and_limit(api):
    info, jobs, _ = api
    key = bearer(info["api_key"])
    huge = "x" * (1 << 20)
    cases = [(v2a_request(trigger_phrase=huge), f"trigger_phrase: String should have at most {MAX_TRIGGER_CHARS}"),
             (v2a_request(validation_negative_prompt=huge), f"validation_negative_prompt: String should have at most {MAX_PROMPT_CHARS}"),
             (v2a_request(validation=[params_pb2.V2AValidation(prompt=huge, video_url="https://e.com/v.mp4")]),
              f"validation.0.prompt: String should have at most {MAX_PROMPT_CHARS}"),
             (v2a_request(validation=[params_pb2.V2AValidation(video_url="https://e.com/v.mp4\r\nHost: evil")]),
              "validation.0.video_url: must not contain control characters"),
             (v2a_request(validation=[params_pb2.V2AValidation(video_url="file:///etc/passwd")]),
              "validation.0.video_url: must be an http://, https:// or upload:// URL"),
             (v2a_request("r" * 129), "request_id: at most 128"),
             (jobs_pb2.CreateJobRequest(params=params_pb2.JobParams(v2a=params_pb2.V2AParams(
                 training_data_url="https://e.com/" + "d" * MAX_URL_CHARS))),
              f"training_data_url: String should have at most {MAX_URL_CHARS}"),
             (av2av_request(trigger_phrase=huge), f"trigger_phrase: String should have at most {MAX_TRIGGER_CHARS}"),
             (av2av_request(validation=[params_pb2.AV2AVValidation(
                 prompt="p", reference_video_url="https://e.com/r.mp4", reference_audio_url="https://e.com/" + "a" * MAX_URL_CHARS)]),
              f"validation.0.reference_audio_url: String should have at most {MAX_URL_CHARS}"),
             (av2av_request(validation=[params_pb2.AV2AVValidation(reference_video_url="https://e.com/r.mp4\nX: y")]),
              "validation.0.reference_video_url: must not contain control characters"),
             (jobs_pb2.CreateJobRequest(params=params_pb2.JobParams(v2a=params_pb2.V2AParams(
                 training_data_url="https://e.com/d.zip\r\nHost: evil"))),
              "training_data_url: must not contain control characters")]
    for request, words in cases:
        with pytest.raises(grpc.RpcError) as error:
            jobs.CreateJob(request, metadata=key)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert words in error.value.details()
    assert jobs.ListJobs(jobs_pb2.ListJobsRequest(), metadata=key).jobs == []


def test_list_items_leave_out_the_prompts_and_replies_stay_small(api):
    info, jobs, _ = api
    key = bearer(info["api_key"])
    long = "p" * MAX_PROMPT_CHARS
    job = jobs.CreateJob(v2a_request(validation_negative_prompt=long, validation=[
        params_pb2.V2AValidation(prompt=long, video_url="https://e.com/v.mp4")] * 2), metadata=key)
    for _ in range(39):
        jobs.CreateJob(v2a_request(validation_negative_prompt=long), metadata=key)
    assert jobs.GetJob(jobs_pb2.GetJobRequest(job_id=job.id), metadata=key).params.v2a.validation[1].prompt == long
    reply = jobs.ListJobs(jobs_pb2.ListJobsRequest(page_size=500), metadata=key)
    assert len(reply.jobs) == 40 and reply.ByteSize() < 40 * 1000
    listed = next(item for item in reply.jobs if item.id == job.id)
    assert listed.params.v2a.validation[0].video_url == "https://e.com/v.mp4" and not listed.params.v2a.validation[0].prompt


def test_a_job_listed_again_after_it_changed_shows_the_change(api):
    """ListJobs keeps serialized items of unchanged jobs: a change must never be hidden by that."""
    info, jobs, _ = api
    key = bearer(info["api_key"])
    created = [jobs.CreateJob(v2a_request(number_of_steps=500), metadata=key) for _ in range(3)]
    first = jobs.ListJobs(jobs_pb2.ListJobsRequest(), metadata=key).jobs
    assert [job.state for job in first] == [jobs_pb2.QUEUED] * 3
    jobs.CancelJob(jobs_pb2.CancelJobRequest(job_id=created[1].id), metadata=key)
    again = {job.id: job for job in jobs.ListJobs(jobs_pb2.ListJobsRequest(), metadata=key).jobs}
    assert [again[job.id].state for job in created] == [jobs_pb2.QUEUED, jobs_pb2.CANCELLED, jobs_pb2.QUEUED]
    assert again[created[1].id].updated_at.ToDatetime() > again[created[1].id].created_at.ToDatetime()
    assert again[created[0].id] == next(job for job in first if job.id == created[0].id)


def test_a_reused_request_id_with_other_parameters_is_refused(api):
    info, jobs, _ = api
    key = bearer(info["api_key"])
    first = jobs.CreateJob(v2a_request("pay-1", rank=16), metadata=key)
    with pytest.raises(grpc.RpcError) as error:
        jobs.CreateJob(v2a_request("pay-1", rank=64), metadata=key)
    assert error.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert f"request_id 'pay-1' was used for job {first.id} with other parameters" in error.value.details()


def test_tenant_names_are_checked_when_a_key_is_created(api):
    _, _, ledger = api
    for name in ("", "Acme Corp", "a" * 65, "-acme", "acme\n", "x/y"):
        with pytest.raises(grpc.RpcError) as error:
            ledger.CreateApiKey(ledger_pb2.CreateApiKeyRequest(tenant=name), metadata=bearer(ADMIN))
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "tenant: 1 to 64 characters" in error.value.details()
    assert ledger.CreateApiKey(ledger_pb2.CreateApiKeyRequest(tenant="acme-2.eu_west"), metadata=bearer(ADMIN)).api_key


def test_an_upload_is_usable_only_by_its_tenant(api):
    info, jobs, ledger = api
    other = bearer(new_tenant(ledger, "globex")[1])
    ledger.RecordUpload(ledger_pb2.RecordUploadRequest(upload_id="5e1f", tenant=info["tenant"], size=3))
    request = jobs_pb2.CreateJobRequest(params=params_pb2.JobParams(v2a=params_pb2.V2AParams(
        training_data_url="upload://5e1f")))
    with pytest.raises(grpc.RpcError) as error:
        jobs.CreateJob(request, metadata=other)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.value.details() == "training_data_url: no upload upload://5e1f of this tenant"
    assert jobs.CreateJob(request, metadata=bearer(info["api_key"])).state == jobs_pb2.QUEUED


def test_a_waiting_job_shows_the_queue_it_waits_in_and_its_place(own_api):
    info, jobs, _ = own_api
    key = bearer(info["api_key"])
    first, second = jobs.CreateJob(v2a_request(), metadata=key), jobs.CreateJob(v2a_request(), metadata=key)
    shown = jobs.GetJob(jobs_pb2.GetJobRequest(job_id=second.id), metadata=key)
    assert (shown.state, shown.queued_for, shown.queue_position) == (jobs_pb2.QUEUED, "ingest", 2)
    from avlora.job_state import state_label
    assert state_label(shown) == "QUEUED for ingest (place 2)"
    jobs.CancelJob(jobs_pb2.CancelJobRequest(job_id=first.id), metadata=key)
    shown = jobs.GetJob(jobs_pb2.GetJobRequest(job_id=second.id), metadata=key)
    assert shown.queue_position == 1
    assert jobs.GetJob(jobs_pb2.GetJobRequest(job_id=first.id), metadata=key).queued_for == ""
    # The ledger logs one info line per state change of a job.
    lines = [json.loads(line) for line in (Path(info["logs"]) / "ledger.log").read_text().splitlines()
             if line.startswith("{")]
    changes = [(line["state"], line["queued_for"]) for line in lines
               if line.get("event") == "job state" and line["job_id"] == first.id]
    assert changes == [("QUEUED", "ingest"), ("CANCELLED", "")]
    assert all(line["level"] == "info" for line in lines if line.get("event") == "job state")


def test_a_database_error_is_a_clear_status_without_sql(api):
    info, _, ledger = api
    with pytest.raises(grpc.RpcError) as error:  # a tenant that does not exist: a foreign-key violation
        ledger.RecordUpload(ledger_pb2.RecordUploadRequest(upload_id="u2", tenant="nobody", size=1))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "does not fit the ledger's database" in error.value.details()
    assert not any(word in error.value.details().upper() for word in ("INSERT", "SELECT", "SQL", "UPLOADS"))


@pytest.mark.parametrize("url, reason", [
    ("http://10.1.2.3/hook", "host 10.1.2.3 resolves to the non-public address 10.1.2.3, which is refused "
                             "(AVLORA_INGEST_ALLOW_NETWORKS can allow a network)"),
    ("https://169.254.169.254/latest/meta-data", "host 169.254.169.254 resolves to the non-public address "
                                                "169.254.169.254, which is refused (AVLORA_INGEST_ALLOW_NETWORKS "
                                                "can allow a network)"),
    ("http://[::1]:8080/hook", "host ::1 resolves to the non-public address ::1, which is refused "
                               "(AVLORA_INGEST_ALLOW_NETWORKS can allow a network)"),
    ("upload://abc", "must be an http:// or https:// URL"),
    ("ftp://example.com/hook", "must be an http://, https:// or upload:// URL"),
    ("http://example.com/\r\nX: y", "must not contain control characters (CR, LF, ...)"),
    ("https://e.com/" + "a" * MAX_URL_CHARS, f"at most {MAX_URL_CHARS} characters"),
])
def test_a_webhook_url_is_guarded_like_a_dataset_url(api, url, reason):
    """The stack allows 127.0.0.0/8 (AVLORA_INGEST_ALLOW_NETWORKS), as for datasets; every other
    non-public network is refused at create, and no job is recorded."""
    info, jobs, _ = api
    key = bearer(info["api_key"])
    request = v2a_request()
    request.webhook_url = url
    with pytest.raises(grpc.RpcError) as error:
        jobs.CreateJob(request, metadata=key)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.value.details() == f"webhook_url: {reason}"
    assert jobs.ListJobs(jobs_pb2.ListJobsRequest(), metadata=key).jobs == []
    request.webhook_url = "http://127.0.0.1:9/hook"  # an allowed network
    job = jobs.CreateJob(request, metadata=key)
    assert jobs.GetJob(jobs_pb2.GetJobRequest(job_id=job.id), metadata=key).webhook_url == "http://127.0.0.1:9/hook"


def test_each_tenant_reads_and_rotates_its_own_webhook_secret(api):
    from standardwebhooks import Webhook
    info, jobs, ledger = api
    key = bearer(info["api_key"])
    other = bearer(new_tenant(ledger, "globex")[1])
    first = jobs.GetWebhookSecret(jobs_pb2.WebhookSecretRequest(), metadata=key).secret
    assert first.startswith("whsec_") and Webhook(first)  # a secret the Standard Webhooks library takes
    assert jobs.GetWebhookSecret(jobs_pb2.WebhookSecretRequest(), metadata=key).secret == first
    theirs = jobs.GetWebhookSecret(jobs_pb2.WebhookSecretRequest(), metadata=other).secret
    assert theirs != first
    rotated = jobs.RotateWebhookSecret(jobs_pb2.WebhookSecretRequest(), metadata=key).secret
    assert rotated.startswith("whsec_") and rotated != first
    assert jobs.GetWebhookSecret(jobs_pb2.WebhookSecretRequest(), metadata=key).secret == rotated
    assert jobs.GetWebhookSecret(jobs_pb2.WebhookSecretRequest(), metadata=other).secret == theirs
    with pytest.raises(grpc.RpcError) as error:
        jobs.GetWebhookSecret(jobs_pb2.WebhookSecretRequest(), metadata=bearer("avl_wrong"))
    assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_every_recorded_job_is_queued_even_when_its_caller_gives_up(own_api):
    """Callers whose deadline passes while their job is being recorded (the database held by
    another writer): every job recorded after its caller left is also queued for ingest (else it
    would wait forever)."""
    import asyncio
    import sqlite3
    import threading

    import nats

    from avlora import bus

    info, jobs, _ = own_api
    key = bearer(info["api_key"])
    database = Path(info["store_dir"]).parent / "ledger.db"
    assert database.exists()

    async def impatient_callers():
        async with grpc.aio.insecure_channel(info["ledger_addr"]) as channel:
            stub = jobs_pb2_grpc.JobServiceStub(channel)
            await stub.ListJobs(jobs_pb2.ListJobsRequest(), metadata=key)  # connected
            calls = [stub.CreateJob(v2a_request(f"r{index}"), metadata=key, timeout=0.5) for index in range(20)]
            return await asyncio.gather(*calls, return_exceptions=True)

    async def queued():
        nc = await nats.connect(info["nats"])
        try:
            return (await nc.jetstream().stream_info(bus.WORK_STREAM)).state.messages
        finally:
            await nc.close()

    writer = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
    writer.execute("BEGIN IMMEDIATE")  # the ledger's inserts wait for this writer
    release = threading.Timer(2.0, lambda: writer.execute("COMMIT"))
    release.start()
    outcomes = asyncio.run(impatient_callers())
    release.join()
    writer.close()
    assert all(isinstance(o, grpc.RpcError) and o.code() == grpc.StatusCode.DEADLINE_EXCEEDED for o in outcomes)
    deadline = time.monotonic() + 20  # the calls whose callers left finish in the ledger
    while len(jobs.ListJobs(jobs_pb2.ListJobsRequest(), metadata=key).jobs) < 20 and time.monotonic() < deadline:
        time.sleep(0.2)
    recorded = jobs.ListJobs(jobs_pb2.ListJobsRequest(page_size=500), metadata=key).jobs
    assert len(recorded) == 20
    assert asyncio.run(queued()) == 20
