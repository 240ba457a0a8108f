"""GetTrainerStatus on a real grpc.aio server."""

import grpc

from avlora.settings import Settings
from avlora.v1 import stages_pb2, stages_pb2_grpc
from services.trainer import status
from services.trainer.server import TrainerServicer


async def test_trainer_status_reports_the_running_job():
    server = grpc.aio.server()
    stages_pb2_grpc.add_TrainerServiceServicer_to_server(
        TrainerServicer(Settings(worker_name="gpu-7", model_dir="/models/ltx23")), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = stages_pb2_grpc.TrainerServiceStub(channel)
            idle = await stub.GetTrainerStatus(stages_pb2.TrainerStatusRequest())
            assert idle.worker == "gpu-7" and idle.job_id == "" and idle.model_dir == "/models/ltx23"
            status.begin("job-1", 2000, "cuda:0", "/models/ltx23")
            status.update(150)
            busy = await stub.GetTrainerStatus(stages_pb2.TrainerStatusRequest())
            assert (busy.job_id, busy.step, busy.total_steps, busy.device) == ("job-1", 150, 2000, "cuda:0")
            status.end()
            assert (await stub.GetTrainerStatus(stages_pb2.TrainerStatusRequest())).job_id == ""
    finally:
        await server.stop(None)
