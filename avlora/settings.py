"""Service settings: `Settings.from_env()` reads AVLORA_<FIELD> variables (avlora/config.py)."""

import os
import socket
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from avlora import config


LEDGER_ROLES = ("all", "api", "events")  # services/ledger/__main__.py
LOG_FORMATS = ("json", "console")  # avlora/service.py


@dataclass(frozen=True)
class Settings:
    ENV_PREFIX = ""
    data_dir: Path = Path(".state")        # state of a service: the default store and scratch live here
    nats_url: str = "nats://127.0.0.1:4222"   # NATS with JetStream
    grpc_port: int = 0                     # 0: any free port (printed at start-up)
    # this process in logs and events; default host-pid
    worker_name: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    database_url: str = ""                 # the ledger's; default SQLite in DATA_DIR
    ledger_addr: str = ""                  # where the workers reach the ledger's internal port; default 127.0.0.1:INTERNAL_PORT
    # the service credential every internal RPC needs (from the deployment's secrets; `avlora up` makes one)
    internal_token: str = ""
    internal_port: int = 50052             # the ledger's internal port (LedgerService); GRPC_PORT serves JobService only
    model_dir: str = ""                    # a local diffusers-format LTX-2.3 directory
    ack_wait_s: float = 30.0               # how long a work item may go without a heartbeat
    max_deliver: int = 4                   # how often a work item is tried
    ingest_concurrency: int = 4            # work items one ingest worker runs at once
    # all: the ledger's API and its event consumer in one process; api: the API only (as many
    # replicas as wanted); events: the event consumer only (exactly one: it applies events in order)
    ledger_role: str = "all"
    ledger_keys: str = ""                  # API keys the ledger registers at start: tenant:key,tenant:key
    admin_key: str = ""                    # the admin key CreateApiKey needs (with the internal token)
    retention_days: float = 30.0           # outputs and checkpoints are deleted this long after a job ends
    # the ledger's event consumer applies retention to the whole store at start and this often (0: never)
    retention_sweep_hours: float = 24.0
    download_url_ttl_s: int = 3600         # how long a presigned download URL stays valid
    # the artifact store: a directory or s3://bucket/prefix; default DATA_DIR/store
    store: str = field(default="", metadata={"env": "STORE_URL"})
    # local space for the files a stage works on; default DATA_DIR/scratch
    scratch: str = field(default="", metadata={"env": "SCRATCH_DIR"})
    metrics_port: int = 0                  # Prometheus metrics over HTTP on this port (0: not served)
    # json: every log line one JSON object (a job's lines carry job_id, tenant, stage, worker);
    # console: the same lines readable on a terminal
    log_format: str = "json"

    def __post_init__(self):
        object.__setattr__(self, "data_dir", Path(self.data_dir).resolve())
        if self.log_format not in LOG_FORMATS:
            raise ValueError(f"AVLORA_LOG_FORMAT={self.log_format!r}: one of {', '.join(LOG_FORMATS)}")

    @classmethod
    def from_env(cls, **overrides) -> "Settings":
        return config.from_env(cls, **overrides)

    @property
    def ledger_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'ledger.db'}"

    @property
    def ledger_address(self) -> str:
        return self.ledger_addr or f"127.0.0.1:{self.internal_port}"

    @property
    def store_url(self) -> str:
        return self.store or str(self.data_dir / "store")

    @contextmanager
    def scratch_dir(self, prefix: str):
        """A local scratch folder, removed with everything in it when the block ends."""
        root = Path(self.scratch) if self.scratch else self.data_dir / "scratch"
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=prefix, dir=root) as folder:
            yield Path(folder)
