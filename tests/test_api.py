"""The public JobService through a real ledger process and nats-server (started by the Stack)."""

import grpc
import pytest

from avlora.v1 import jobs_pb2, jobs_pb2_grpc, params_pb2, stages_pb2, stages_pb2_grpc

ADMIN = "admin-secret"


@pytest.fixture
def api(make_stack):
    stack = make_stack(extra_env={"AVLORA_ADMIN_KEY": ADMIN}, services=("ledger",))
    channel = grpc.insecure_channel(stack.info["ledger_addr"])
    yield stack.info, jobs_pb2_grpc.JobServiceStub(channel), stages_pb2_grpc.LedgerServiceStub(channel)
    channel.close()


def bearer(key):
    return [("authorization", f"Bearer {key}")]


def v2a_request(request_id="", **fields):
    return jobs_pb2.CreateJobRequest(request_id=request_id, params=params_pb2.JobParams(
        v2a=params_pb2.V2AParams(training_data_url="https://example.com/d.zip", **fields)))


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
        ledger.CreateApiKey(stages_pb2.CreateApiKeyRequest(tenant="globex"), metadata=bearer("not-admin"))
    assert error.value.code() == grpc.StatusCode.PERMISSION_DENIED
    other = ledger.CreateApiKey(stages_pb2.CreateApiKeyRequest(tenant="globex"), metadata=bearer(ADMIN)).api_key
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
    events = ledger.ListJobEvents(stages_pb2.ListJobEventsRequest(job_id=job.id)).events
    assert [event.event.WhichOneof("kind") for event in events] == ["cancelled"]
    with pytest.raises(grpc.RpcError) as error:
        jobs.CancelJob(jobs_pb2.CancelJobRequest(job_id="nope"), metadata=key)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


def test_health_and_reflection_are_served(api):
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
    info, _, _ = api
    with grpc.insecure_channel(info["ledger_addr"]) as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service="avlora.v1.JobService"))
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        replies = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        names = {service.name for service in next(replies).list_services_response.service}
    assert {"avlora.v1.JobService", "avlora.v1.LedgerService", "grpc.health.v1.Health"} <= names


def test_a_job_that_cannot_be_queued_is_not_recorded(make_stack):
    stack = make_stack(services=("ledger",), name="no-nats")
    stack.processes["nats"].terminate()
    stack.processes["nats"].wait()
    key = bearer(stack.info["api_key"])
    with grpc.insecure_channel(stack.info["ledger_addr"]) as channel:
        jobs = jobs_pb2_grpc.JobServiceStub(channel)
        with pytest.raises(grpc.RpcError) as error:
            jobs.CreateJob(v2a_request("r1"), metadata=key, timeout=60)
        assert error.value.code() == grpc.StatusCode.UNAVAILABLE and "nothing was recorded" in error.value.details()
        assert jobs.ListJobs(jobs_pb2.ListJobsRequest(), metadata=key).jobs == []
