"""Ingest's limits: sizes, timeouts, retries and allowed networks, each overridable by an
AVLORA_INGEST_<FIELD> environment variable (e.g. AVLORA_INGEST_MAX_DOWNLOAD_BYTES)."""

from dataclasses import dataclass

from avlora import config
from avlora.netguard import Network, parse_networks

GiB = 1 << 30


@dataclass(frozen=True)
class IngestLimits:
    ENV_PREFIX = "INGEST_"
    max_download_bytes: int = 8 * GiB       # a dataset zip or a validation file
    max_total_bytes: int = 16 * GiB         # everything extracted from one archive
    max_entry_bytes: int = 4 * GiB          # one extracted file
    max_entries: int = 10_000               # files in one archive
    max_ratio: float = 100.0                # uncompressed / compressed, for entries over ratio_floor
    ratio_floor_bytes: int = 1 << 20        # entries smaller than this skip the ratio check
    connect_timeout_s: float = 10.0         # the longest wait for a connection
    read_timeout_s: float = 30.0            # the longest wait for the next bytes
    total_timeout_s: float = 3600.0         # the longest one download may take
    min_bytes_per_s: int = 32_768           # a download slower than this over SLOW_WINDOW_S is abandoned
    slow_window_s: float = 60.0             # the window MIN_BYTES_PER_S is measured over
    max_redirects: int = 5                  # redirects followed (each target checked again)
    retries: int = 3                        # extra attempts after the first
    backoff_s: float = 0.5                  # doubled on each retry
    max_retry_wait_s: float = 10.0          # the longest wait before a retry (a longer Retry-After fails)
    retry_budget_s: float = 30.0            # all waits before retries of one download together
    inspect_workers: int = 4                # InspectDataset calls running at once (each downloads)
    inspect_queue: int = 8                  # further calls waiting; beyond that RESOURCE_EXHAUSTED
    inspect_per_tenant: int = 2             # one tenant's calls running or waiting at once
    allow_networks: str = ""                # comma-separated CIDRs allowed despite being non-public (downloads and webhook URLs)

    @classmethod
    def from_env(cls) -> "IngestLimits":
        return config.from_env(cls)

    @property
    def allowed_networks(self) -> list[Network]:
        return parse_networks(self.allow_networks)
