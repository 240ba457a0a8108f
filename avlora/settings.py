"""Service settings, read from environment variables (AVLORA_*)."""

import os
import socket
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path


def _env(name: str, default: str) -> str:
    return os.environ.get(f"AVLORA_{name}", default)


@dataclass(frozen=True)
class Settings:
    data_dir: Path = field(default_factory=lambda: Path(_env("DATA_DIR", ".state")).resolve())
    nats_url: str = field(default_factory=lambda: _env("NATS_URL", "nats://127.0.0.1:4222"))
    grpc_port: int = field(default_factory=lambda: int(_env("GRPC_PORT", "0")))
    worker_name: str = field(default_factory=lambda: _env("WORKER_NAME", f"{socket.gethostname()}-{os.getpid()}"))
    database_url: str = field(default_factory=lambda: _env("DATABASE_URL", ""))
    ledger_addr: str = field(default_factory=lambda: _env("LEDGER_ADDR", "127.0.0.1:50052"))  # its internal port
    # The service credential every internal RPC needs (from the deployment's secrets; `avlora up` makes one).
    internal_token: str = field(default_factory=lambda: _env("INTERNAL_TOKEN", ""))
    # The ledger's internal port (LedgerService); its public port (AVLORA_GRPC_PORT) serves JobService only.
    internal_port: int = field(default_factory=lambda: int(_env("INTERNAL_PORT", "50052")))
    model_dir: str = field(default_factory=lambda: _env("MODEL_DIR", ""))
    # Stage workers: how long a message may go without a heartbeat, and how often it is retried.
    ack_wait_s: float = field(default_factory=lambda: float(_env("ACK_WAIT_S", "30")))
    max_deliver: int = field(default_factory=lambda: int(_env("MAX_DELIVER", "4")))
    # The artifact store: a local directory (default DATA_DIR/store) or s3://bucket/prefix.
    store: str = field(default_factory=lambda: _env("STORE_URL", ""))
    # Local space for the files a stage works on (downloads, extraction, media); default DATA_DIR/scratch.
    scratch: str = field(default_factory=lambda: _env("SCRATCH_DIR", ""))

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
