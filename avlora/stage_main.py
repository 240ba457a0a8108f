"""`python -m services.<stage>`: one stage process (its gRPC servicer and its NATS worker)."""

import asyncio

from avlora.logs import configure_logging
from avlora.service import Registration, serve
from avlora.settings import Settings
from avlora.stage import StageFunction
from avlora.worker import StageWorker


def run_stage_process(stage: str, run: StageFunction, registrations: list[Registration],
                      concurrency: int = 1) -> None:
    """Serves the registrations and runs the stage's worker on up to `concurrency` items at once."""
    settings = Settings.from_env()
    configure_logging(settings)
    worker = StageWorker(stage, run, settings, concurrency)
    asyncio.run(serve(stage, settings, registrations, background=[worker.serve], on_stop=worker.stop))
