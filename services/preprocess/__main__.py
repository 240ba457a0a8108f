"""`python -m services.preprocess`: the InspectDataset RPC and the preprocess worker."""

from avlora.auth import LedgerAuthenticator
from avlora.settings import Settings
from avlora.stage_main import run_stage_process
from avlora.stores import open_store
from avlora.v1 import stages_pb2_grpc
from services.preprocess.server import PreprocessServicer
from services.preprocess.stage import run

if __name__ == "__main__":
    settings = Settings.from_env()
    servicer = PreprocessServicer(open_store(settings.store_url), LedgerAuthenticator(settings.ledger_address, settings.internal_token),
                                  settings=settings)
    run_stage_process("preprocess", run, [(stages_pb2_grpc.add_PreprocessServiceServicer_to_server, servicer,
                                           "avlora.v1.PreprocessService")])
