"""Runs one service process: grpc.aio servers (health checking and reflection on every server)
beside the service's background tasks (a stage worker, the ledger's event consumer), until
SIGTERM/SIGINT."""

import asyncio
import hmac
import signal
from collections.abc import Awaitable, Callable

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from avlora import metrics
from avlora.auth import INTERNAL_HEADER
from avlora.params import InvalidParams, JobParams, from_proto
from avlora.settings import Settings
from avlora.v1 import params_pb2

# (add_XServicer_to_server, servicer, full service name)
Registration = tuple[Callable, object, str]


async def valid_params(message: params_pb2.JobParams, context) -> JobParams:
    """The request's parameters, validated; aborts with INVALID_ARGUMENT naming the field and rule."""
    try:
        return from_proto(message)
    except InvalidParams as error:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))


# Services whose every RPC needs the service credential (the rest take a tenant's API key).
INTERNAL_SERVICES = frozenset({"avlora.v1.LedgerService", "avlora.v1.TrainerService"})


class InternalTokenCheck(grpc.aio.ServerInterceptor):
    """Refuses a call to an internal service without the right `x-avlora-internal-token`:
    UNAUTHENTICATED when it is missing, PERMISSION_DENIED when it is wrong."""

    def __init__(self, token: str):
        self.token = token.encode()

    async def intercept_service(self, continuation, details):
        if details.method.split("/")[1] in INTERNAL_SERVICES:
            supplied = dict(details.invocation_metadata or ()).get(INTERNAL_HEADER, "")
            if not supplied:
                return _refuse(grpc.StatusCode.UNAUTHENTICATED, f"internal RPC: missing '{INTERNAL_HEADER}'")
            if not hmac.compare_digest(supplied.encode(), self.token):
                return _refuse(grpc.StatusCode.PERMISSION_DENIED, "internal RPC: wrong service credential")
        return await continuation(details)


def _refuse(code: grpc.StatusCode, message: str) -> grpc.RpcMethodHandler:
    async def refuse(request, context):
        await context.abort(code, message)
    return grpc.unary_unary_rpc_method_handler(refuse)  # every internal RPC is unary


async def start_server(settings: Settings, port: int, registrations: list[Registration]):
    """A started server with its registrations, health checking and reflection of what it serves."""
    server = grpc.aio.server(interceptors=[metrics.GrpcMetrics(), InternalTokenCheck(settings.internal_token)],
                             options=[("grpc.max_receive_message_length", 8 * 1024 * 1024)])
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [health.SERVICE_NAME, reflection.SERVICE_NAME]
    for add, servicer, service_name in registrations:
        add(servicer, server)
        names.append(service_name)
    reflection.enable_server_reflection(names, server)
    bound = server.add_insecure_port(f"0.0.0.0:{port}")
    await server.start()
    served = ["", *names[2:]]
    for service_name in served:
        await health_servicer.set(service_name, health_pb2.HealthCheckResponse.SERVING)
    return server, health_servicer, served, bound


async def serve(name: str, settings: Settings, registrations: list[Registration],
                background: list[Callable[[], Awaitable[None]]] = (),
                on_stop: Callable[[], None] = lambda: None, internal_port: int | None = None) -> None:
    """Serves the registrations on settings.grpc_port; with internal_port, the internal services
    (INTERNAL_SERVICES) on that second port instead, so the first serves only public ones."""
    if any(service in INTERNAL_SERVICES for _, _, service in registrations) and not settings.internal_token:
        raise SystemExit(f"{name}: AVLORA_INTERNAL_TOKEN is not set (the service credential of internal RPCs)")
    ports = {settings.grpc_port: registrations}
    if internal_port is not None:
        if internal_port and internal_port == settings.grpc_port:
            raise SystemExit(f"{name}: AVLORA_INTERNAL_PORT must differ from AVLORA_GRPC_PORT ({internal_port})")
        ports = {settings.grpc_port: [r for r in registrations if r[2] not in INTERNAL_SERVICES],
                 internal_port: [r for r in registrations if r[2] in INTERNAL_SERVICES]}
    servers = []
    for index, (port, served) in enumerate(ports.items()):
        servers.append(await start_server(settings, port, served))
        label = name if index == 0 else f"{name}-internal"
        structlog.get_logger().info("serving", service=label, port=servers[-1][3])
    if metrics.serve(settings.metrics_port):
        structlog.get_logger().info("serving metrics", service=name, port=settings.metrics_port)

    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopped.set)
    tasks = [asyncio.create_task(job()) for job in background]
    crashed = asyncio.ensure_future(asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)) if tasks else None
    waiters = [asyncio.ensure_future(stopped.wait())] + ([crashed] if crashed else [])
    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    for _, health_servicer, served, _ in servers:
        for service_name in served:
            await health_servicer.set(service_name, health_pb2.HealthCheckResponse.NOT_SERVING)
    on_stop()
    await asyncio.gather(*(server.stop(grace=2) for server, *_ in servers))
    if tasks:
        done, pending = await asyncio.wait(tasks, timeout=30)
        for task in pending:
            task.cancel()
        for task in done:
            if task.exception():
                raise task.exception()
