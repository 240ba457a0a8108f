"""`python -m services.trainer`: the GetTrainerStatus RPC and the training worker."""

from avlora.settings import Settings
from avlora.stage_main import run_stage_process
from avlora.v1 import stages_pb2_grpc
from services.trainer.server import TrainerServicer
from services.trainer.stage import run

if __name__ == "__main__":
    run_stage_process("train", run, [(stages_pb2_grpc.add_TrainerServiceServicer_to_server,
                                      TrainerServicer(Settings.from_env()), "avlora.v1.TrainerService")])
