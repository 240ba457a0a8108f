"""`python -m services.ingest`: the Upload RPC and the ingest worker."""

from avlora.auth import LedgerAuthenticator
from avlora.settings import Settings
from avlora.stage_main import run_stage_process
from avlora.stores import open_store
from avlora.v1 import stages_pb2_grpc
from services.ingest.limits import IngestLimits
from services.ingest.server import IngestServicer
from services.ingest.stage import run

if __name__ == "__main__":
    settings = Settings.from_env()
    servicer = IngestServicer(open_store(settings.store_url), IngestLimits.from_env().max_download_bytes,
                              LedgerAuthenticator(settings.ledger_address, settings.internal_token), settings)
    run_stage_process("ingest", run, [(stages_pb2_grpc.add_IngestServiceServicer_to_server, servicer,
                                       "avlora.v1.IngestService")],
                      concurrency=settings.ingest_concurrency)
