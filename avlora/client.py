"""How the CLI reaches the stack: DATA_DIR/stack.json (written by `avlora up`) or
AVLORA_ADDR / AVLORA_API_KEY / AVLORA_INGEST_ADDR / AVLORA_PREPROCESS_ADDR."""

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import grpc

from avlora import config
from avlora.settings import Settings
from avlora.v1 import jobs_pb2_grpc, stages_pb2, stages_pb2_grpc

CHUNK = 1024 * 1024


def call(function, *args, **kwargs):
    """A gRPC call from the command line: its error ends the command with the server's message."""
    try:
        return function(*args, **kwargs)
    except grpc.RpcError as error:
        raise SystemExit(f"error: {error.code().name}: {error.details()}") from None


@dataclass(frozen=True)
class ClientSettings:
    """Where the CLI finds a stack: AVLORA_DATA_DIR/stack.json, or these variables for a remote one."""
    ENV_PREFIX = ""
    addr: str = ""                         # the public JobService address
    api_key: str = ""                      # a tenant's API key
    ingest_addr: str = ""                  # for uploads of local files
    preprocess_addr: str = ""              # for `avlora inspect`


@dataclass
class Endpoints:
    api: str
    api_key: str
    ingest: str
    preprocess: str
    store_dir: str = ""   # where store:// outputs are on this machine (embedded stack)

    @classmethod
    def find(cls, data_dir: str | None = None) -> "Endpoints":
        env = config.from_env(ClientSettings)
        stack_file = Path(data_dir or Settings.from_env().data_dir) / "stack.json"
        info = json.loads(stack_file.read_text()) if stack_file.exists() else {}
        api = env.addr or info.get("ledger_addr")
        key = env.api_key or info.get("api_key")
        if not api or not key:
            raise SystemExit(
                f"no stack found: {stack_file} does not exist. Start one with `avlora up`, point to the "
                "directory of a running one with --data-dir DIR (or AVLORA_DATA_DIR=DIR), or set "
                "AVLORA_ADDR and AVLORA_API_KEY to reach a remote one")
        return cls(api=api, api_key=key, ingest=env.ingest_addr or info.get("ingest_addr", ""),
                   preprocess=env.preprocess_addr or info.get("preprocess_addr", ""),
                   store_dir=info.get("store_dir", ""))

    def local_path(self, uri: str) -> str:
        """The file behind a store:// URI when the store is on this machine, else the URI."""
        if self.store_dir and uri.startswith("store://"):
            path = Path(self.store_dir) / uri.removeprefix("store://")
            if path.exists():
                return str(path)
        return uri

    @property
    def auth(self) -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {self.api_key}")]

    def jobs(self) -> jobs_pb2_grpc.JobServiceStub:
        return jobs_pb2_grpc.JobServiceStub(grpc.insecure_channel(self.api))

    def preprocess_stub(self) -> stages_pb2_grpc.PreprocessServiceStub:
        return stages_pb2_grpc.PreprocessServiceStub(grpc.insecure_channel(self.need("preprocess")))

    def need(self, name: str) -> str:
        address = getattr(self, name)
        if not address:
            raise SystemExit(f"no {name} address: set AVLORA_{name.upper()}_ADDR")
        return address

    def upload(self, path: Path) -> str:
        """Streams a local file to ingest and returns its upload:// reference."""
        digest = hashlib.sha256()

        def chunks():
            with path.open("rb") as handle:
                first = True
                while block := handle.read(CHUNK):
                    digest.update(block)
                    yield stages_pb2.UploadChunk(filename=path.name if first else "", data=block)
                    first = False
            yield stages_pb2.UploadChunk(sha256=digest.hexdigest())

        with grpc.insecure_channel(self.need("ingest")) as channel:
            stub = stages_pb2_grpc.IngestServiceStub(channel)
            return stub.Upload(chunks(), metadata=self.auth, timeout=3600).uri


def as_url(endpoints: Endpoints, value: str) -> str:
    """URLs pass through; a local file is uploaded first."""
    if value.startswith(("http://", "https://", "upload://")):
        return value
    path = Path(value)
    if not path.is_file():
        raise SystemExit(f"{value}: no such file (and not an http(s):// or upload:// URL)")
    return endpoints.upload(path)
