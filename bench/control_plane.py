"""Control-plane speed: CreateJob with 1, 8 and 32 concurrent clients and ListJobs(50), through a
real ledger process (its own nats-server, `avlora up`'s Stack with the ledger only), on SQLite and,
when DATABASE_URL is set, on a fresh PostgreSQL database.

    .venv/bin/python bench/control_plane.py [--seconds 5] [--clients 1 8 32]

Goal (issue 11): >= 500 CreateJob/s at 32 clients with p99 < 50 ms on PostgreSQL, and ListJobs(50)
p99 < 50 ms. The work queue only fills here (no stage workers drain it)."""

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import grpc
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from avlora.stack import Stack  # noqa: E402
from avlora.v1 import jobs_pb2, jobs_pb2_grpc, params_pb2  # noqa: E402


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def hammer(address: str, metadata, clients: int, seconds: float, call) -> tuple[int, list[float]]:
    """`clients` concurrent callers for `seconds`: (calls completed, latencies in seconds)."""
    latencies: list[float] = []
    deadline = time.monotonic() + seconds
    async with grpc.aio.insecure_channel(address) as channel:
        stub = jobs_pb2_grpc.JobServiceStub(channel)

        async def client() -> None:
            while time.monotonic() < deadline:
                start = time.perf_counter()
                await call(stub, metadata)
                latencies.append(time.perf_counter() - start)
        await asyncio.gather(*(client() for _ in range(clients)))
    return len(latencies), latencies


async def create(stub, metadata) -> None:
    await stub.CreateJob(jobs_pb2.CreateJobRequest(request_id=uuid.uuid4().hex, params=params_pb2.JobParams(
        v2a=params_pb2.V2AParams(training_data_url="https://example.com/data.zip"))), metadata=metadata, timeout=30)


async def list_jobs(stub, metadata) -> None:
    reply = await stub.ListJobs(jobs_pb2.ListJobsRequest(page_size=50), metadata=metadata, timeout=30)
    assert len(reply.jobs) == 50


def measured(ledger: psutil.Process, clients: int, seconds: float, *target) -> tuple[int, list[float], float]:
    """(calls, latencies, the ledger's CPU seconds per call): the CPU figure holds on a busy machine."""
    before = sum(ledger.cpu_times()[:2])
    count, latencies = asyncio.run(hammer(*target[:2], clients, seconds, target[2]))
    return count, latencies, (sum(ledger.cpu_times()[:2]) - before) / max(count, 1)


def report(label: str, count: int, latencies: list[float], seconds: float, cpu: float) -> None:
    print(f"  {label:24} {count / seconds:8.1f} req/s   p50 {statistics.median(latencies) * 1000:7.1f} ms   "
          f"p99 {percentile(latencies, 0.99) * 1000:7.1f} ms   ledger CPU {cpu * 1000:5.2f} ms/req", flush=True)


def run(database: str, database_url: str, seconds: float, client_counts: list[int]) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-control-") as folder:
        env = {"AVLORA_MODEL_DIR": folder} | ({"AVLORA_DATABASE_URL": database_url} if database_url else {})
        stack = Stack(Path(folder), extra_env=env, services=("ledger",))
        info = stack.start()
        try:
            metadata = [("authorization", f"Bearer {info['api_key']}")]
            print(f"{database}:", flush=True)
            ledger = psutil.Process(stack.processes["ledger"].pid)
            for clients in client_counts:
                count, latencies, cpu = measured(ledger, clients, seconds, info["ledger_addr"], metadata, create)
                report(f"CreateJob, {clients} clients", count, latencies, seconds, cpu)
            for clients in (1, 8):
                count, latencies, cpu = measured(ledger, clients, seconds, info["ledger_addr"], metadata, list_jobs)
                report(f"ListJobs(50), {clients} clients", count, latencies, seconds, cpu)
        finally:
            stack.stop()


def fresh_postgres(base: str) -> tuple[str, callable]:
    import psycopg
    name = f"avlora_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(base, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(base, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return base.rsplit("/", 1)[0] + "/" + name, drop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs; each figure over {args.seconds:.0f} s", flush=True)
    run("SQLite", "", args.seconds, args.clients)
    if base := os.environ.get("DATABASE_URL"):
        url, drop = fresh_postgres(base)
        try:
            run("PostgreSQL", url, args.seconds, args.clients)
        finally:
            drop()


if __name__ == "__main__":
    main()
