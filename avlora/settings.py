"""Service settings, read from environment variables (AVLORA_*)."""

import os
import socket
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
    ledger_addr: str = field(default_factory=lambda: _env("LEDGER_ADDR", "127.0.0.1:50051"))
    model_dir: str = field(default_factory=lambda: _env("MODEL_DIR", ""))
    # Stage workers: how long a message may go without a heartbeat, and how often it is retried.
    ack_wait_s: float = field(default_factory=lambda: float(_env("ACK_WAIT_S", "30")))
    max_deliver: int = field(default_factory=lambda: int(_env("MAX_DELIVER", "4")))

    @property
    def store_dir(self) -> Path:
        return self.data_dir / "store"
