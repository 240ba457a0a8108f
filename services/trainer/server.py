"""The trainer's direct RPC: what this trainer is doing now."""

import grpc

from avlora.settings import Settings
from avlora.v1 import stages_pb2, stages_pb2_grpc
from services.trainer import status


class TrainerServicer(stages_pb2_grpc.TrainerServiceServicer):
    def __init__(self, settings: Settings):
        self.settings = settings

    async def GetTrainerStatus(self, request, context: grpc.aio.ServicerContext) -> stages_pb2.TrainerStatus:
        activity = status.current()
        return stages_pb2.TrainerStatus(
            worker=self.settings.worker_name, job_id=activity.job_id, step=activity.step,
            total_steps=activity.total_steps, device=activity.device,
            model_dir=activity.model_dir or self.settings.model_dir)
