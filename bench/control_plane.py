"""Control-plane speed through real ledger processes (`avlora up`'s Stack: its own nats-server, the
ledger's API and its event consumer as two processes, and an ingest worker), on SQLite and, when
DATABASE_URL is set, on a fresh PostgreSQL database, while the pipeline drains the jobs.

    .venv/bin/python bench/control_plane.py [--seconds 5] [--rate 500] [--clients 1 8 32]

Figures, each over --seconds:
- CreateJob from 32 clients at the goal's offered rate (--rate, open loop: each request is sent at
  its scheduled time and its latency counts from then, so a stalled server cannot hide it);
- CreateJob capacity at 1/8/32 clients (closed loop: each client sends its next request when the
  reply arrives; at saturation, latency is clients / throughput);
- ListJobs(50) at 1 and 8 clients;
each with the CPU the ledger's API process spent per request.
Meanwhile the ingest worker drains the queue: every job downloads a small zip from a local HTTP
server and fails (it holds no video), so each job's events are applied and billed by the ledger's
event consumer. The worker runs at nice 10, standing for a worker fleet on its own machines (on 2
cores it would otherwise take the CPU the figures measure); --drain-nice 0 shares the CPU evenly,
--no-drain leaves the queue to fill, --one-ledger-process runs the API and the event consumer in one
process (AVLORA_LEDGER_ROLE=all). The bench ends with how many jobs drained.

Goal (issue 11): >= 500 CreateJob/s at 32 clients with p99 < 50 ms on PostgreSQL, and ListJobs(50)
p99 < 50 ms."""

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import zipfile
from pathlib import Path

import grpc
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from avlora.stack import LEDGER_EVENTS, Stack, free_port  # noqa: E402
from avlora.v1 import jobs_pb2, jobs_pb2_grpc, params_pb2  # noqa: E402

LIST_CLIENTS = (1, 8)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def hammer(address: str, metadata, clients: int, seconds: float, call,
                 rate: float = 0.0) -> tuple[list[float], float]:
    """`clients` concurrent callers for `seconds`: (latencies, seconds until the last reply). rate 0: closed loop (each
    caller sends again as soon as it has its reply); else open loop at `rate` requests/s in all,
    each latency counted from the request's scheduled time."""
    latencies: list[float] = []
    async with grpc.aio.insecure_channel(address) as channel:
        stub = jobs_pb2_grpc.JobServiceStub(channel)
        await call(stub, metadata)  # connected before the clock starts
        started = time.perf_counter()

        async def client(index: int) -> None:
            sent = 0
            while True:
                due = started + (sent * clients + index) / rate if rate else time.perf_counter()
                if due - started >= seconds:
                    return
                if (wait := due - time.perf_counter()) > 0:
                    await asyncio.sleep(wait)
                await call(stub, metadata)
                latencies.append(time.perf_counter() - due)
                sent += 1
        await asyncio.gather(*(client(index) for index in range(clients)))
    return latencies, time.perf_counter() - started


def create_call(dataset_url: str):
    async def create(stub, metadata) -> None:
        await stub.CreateJob(jobs_pb2.CreateJobRequest(request_id=uuid.uuid4().hex, params=params_pb2.JobParams(
            v2a=params_pb2.V2AParams(training_data_url=dataset_url))), metadata=metadata, timeout=30)
    return create


async def list_jobs(stub, metadata) -> None:
    reply = await stub.ListJobs(jobs_pb2.ListJobsRequest(page_size=50), metadata=metadata, timeout=30)
    assert len(reply.jobs) == 50


def measured(label: str, ledger: psutil.Process, seconds: float, address: str, metadata, call, clients: int,
             rate: float = 0.0) -> None:
    """Prints requests/s, p50, p99 and the ledger's CPU per request (which holds on a busy machine)."""
    before = sum(ledger.cpu_times()[:2])
    latencies, elapsed = asyncio.run(hammer(address, metadata, clients, seconds, call, rate))
    cpu = (sum(ledger.cpu_times()[:2]) - before) / max(len(latencies), 1)
    print(f"  {label:36} {len(latencies) / elapsed:7.1f} req/s   p50 {statistics.median(latencies) * 1000:6.1f} ms"
          f"   p99 {percentile(latencies, 0.99) * 1000:6.1f} ms   ledger CPU {cpu * 1000:5.2f} ms/req", flush=True)


def ended_jobs(address: str, metadata) -> int:
    """Jobs billed so far: every job that reached a terminal state."""
    with grpc.insecure_channel(address) as channel:
        usage = jobs_pb2_grpc.JobServiceStub(channel).GetUsage(jobs_pb2.GetUsageRequest(), metadata=metadata,
                                                               timeout=60)
    return len(usage.lines)


def serve_dataset(folder: Path) -> tuple[str, subprocess.Popen]:
    """A local HTTP server (its own process) with a zip that ingest downloads and refuses."""
    (folder / "www").mkdir()
    with zipfile.ZipFile(folder / "www" / "data.zip", "w") as archive:
        archive.writestr("readme.txt", "no clips here")
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                               "--directory", str(folder / "www")], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    return f"http://127.0.0.1:{port}/data.zip", server


def analyze(database_url: str) -> None:
    """ANALYZE, as autovacuum does within a minute or so of a new table's growth: on a fresh
    database the planner has no statistics yet and lists a tenant's jobs with a full sort."""
    if database_url:
        import psycopg
        with psycopg.connect(database_url, autocommit=True) as connection:
            connection.execute("ANALYZE")


def run(database: str, database_url: str, seconds: float, client_counts: list[int], rate: float,
        drain_nice: int | None, split: bool) -> None:
    """drain_nice None: no ingest worker (the queue only fills); split: the ledger's event consumer
    in a process of its own."""
    with tempfile.TemporaryDirectory(prefix="bench-control-") as folder:
        dataset_url, http_server = serve_dataset(Path(folder))
        env = {"AVLORA_MODEL_DIR": folder, "AVLORA_INGEST_ALLOW_NETWORKS": "127.0.0.0/8"} | (
            {"AVLORA_DATABASE_URL": database_url} if database_url else {})
        ledger = ("ledger", LEDGER_EVENTS) if split else ("ledger",)
        stack = Stack(Path(folder), extra_env=env, services=ledger if drain_nice is None else (*ledger, "ingest"))
        info = stack.start()
        try:
            address, metadata = info["ledger_addr"], [("authorization", f"Bearer {info['api_key']}")]
            ledger = psutil.Process(stack.processes["ledger"].pid)
            if drain_nice is not None:  # the pipeline: on machines of its own in a deployment
                for name in ("ingest", LEDGER_EVENTS) if split else ("ingest",):
                    psutil.Process(stack.processes[name].pid).nice(drain_nice)
            create = create_call(dataset_url)
            pipeline = "the ingest worker and the ledger's event consumer" if split else "the ingest worker"
            print(f"{database} ({'no worker draining the queue' if drain_nice is None else f'{pipeline} at nice {drain_nice} draining the queue'}; "
                  f"the ledger {'API and event consumer in two processes' if split else 'in one process'}):",
                  flush=True)
            started = time.monotonic()
            measured(f"CreateJob, 32 clients, {rate:.0f}/s offered", ledger, seconds, address, metadata, create, 32,
                     rate)
            for clients in client_counts:
                measured(f"CreateJob, {clients} clients, capacity", ledger, seconds, address, metadata, create,
                         clients)
            analyze(database_url)
            for clients in LIST_CLIENTS:
                measured(f"ListJobs(50), {clients} clients", ledger, seconds, address, metadata, list_jobs, clients)
            if drain_nice is not None:
                print(f"  drained: {ended_jobs(address, metadata)} jobs failed and billed by ingest in "
                      f"{time.monotonic() - started:.0f} s", flush=True)
        finally:
            stack.stop()
            http_server.terminate()
            http_server.wait()


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
    parser.add_argument("--rate", type=float, default=500.0, help="CreateJob requests/s offered by 32 clients")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--drain-nice", type=int, default=10, help="the ingest worker's nice value")
    parser.add_argument("--no-drain", action="store_true", help="no ingest worker: the queue only fills")
    parser.add_argument("--one-ledger-process", action="store_true",
                        help="the ledger's API and event consumer in one process (AVLORA_LEDGER_ROLE=all)")
    args = parser.parse_args()
    split = not args.one_ledger_process
    drain_nice = None if args.no_drain else args.drain_nice
    print(f"{os.cpu_count()} CPUs; each figure over {args.seconds:.0f} s", flush=True)
    run("SQLite", "", args.seconds, args.clients, args.rate, drain_nice, split)
    if base := os.environ.get("DATABASE_URL"):
        url, drop = fresh_postgres(base)
        try:
            run("PostgreSQL", url, args.seconds, args.clients, args.rate, drain_nice, split)
        finally:
            drop()


if __name__ == "__main__":
    main()
