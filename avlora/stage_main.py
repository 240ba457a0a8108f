"""`python -m services.<stage>`: one stage process (its gRPC servicer and its NATS worker)."""

import asyncio

from avlora.service import Registration, configure_logging, serve
from avlora.settings import Settings
from avlora.stage import StageFunction
from avlora.worker import StageWorker


def run_stage_process(stage: str, run: StageFunction, registrations: list[Registration],
                      concurrency: int = 1) -> None:
    """Serves the registrations and runs the stage's worker on up to `concurrency` items at once."""
    configure_logging()
    settings = Settings.from_env()
    worker = StageWorker(stage, run, settings, concurrency)
    asyncio.run(serve(stage, settings, registrations, background=[worker.serve], on_stop=worker.stop))
