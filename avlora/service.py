"""Runs one service process: a grpc.aio server (health checking and reflection on every server)
beside the service's background tasks (a stage worker, the ledger's event consumer), until
SIGTERM/SIGINT."""

import asyncio
import logging
import signal
import sys
from collections.abc import Awaitable, Callable

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from avlora.settings import Settings

# (add_XServicer_to_server, servicer, full service name)
Registration = tuple[Callable, object, str]


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    structlog.configure(processors=[
        structlog.processors.add_log_level, structlog.processors.TimeStamper(fmt="iso"),
        structlog.processors.JSONRenderer()], logger_factory=structlog.PrintLoggerFactory(sys.stderr))


async def serve(name: str, settings: Settings, registrations: list[Registration],
                background: list[Callable[[], Awaitable[None]]] = (),
                on_stop: Callable[[], None] = lambda: None) -> None:
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 8 * 1024 * 1024)])
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [health.SERVICE_NAME, reflection.SERVICE_NAME]
    for add, servicer, service_name in registrations:
        add(servicer, server)
        names.append(service_name)
    reflection.enable_server_reflection(names, server)
    port = server.add_insecure_port(f"0.0.0.0:{settings.grpc_port}")
    await server.start()
    for service_name in ["", *names[2:]]:
        await health_servicer.set(service_name, health_pb2.HealthCheckResponse.SERVING)
    # The stack reads this line to learn the port when AVLORA_GRPC_PORT=0.
    print(f"AVLORA_LISTENING {name} {port}", flush=True)
    structlog.get_logger().info("serving", service=name, port=port)

    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopped.set)
    tasks = [asyncio.create_task(job()) for job in background]
    crashed = asyncio.ensure_future(asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)) if tasks else None
    waiters = [asyncio.ensure_future(stopped.wait())] + ([crashed] if crashed else [])
    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    for service_name in ["", *names[2:]]:
        await health_servicer.set(service_name, health_pb2.HealthCheckResponse.NOT_SERVING)
    on_stop()
    await server.stop(grace=2)
    if tasks:
        done, pending = await asyncio.wait(tasks, timeout=30)
        for task in pending:
            task.cancel()
        for task in done:
            if task.exception():
                raise task.exception()
