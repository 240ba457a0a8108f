"""The preprocess service's direct RPC: InspectDataset, a free dry run of every dataset check
(ingest's download, archive and media rules, then preprocessing's) without encoding."""

import asyncio
import secrets
import tempfile
from pathlib import Path

import grpc

from avlora.auth import LedgerAuthenticator
from avlora.service import valid_params
from avlora.store import ArtifactStore, JobFiles, LocalFiles
from avlora.v1 import dataset_pb2, stages_pb2, stages_pb2_grpc
from avlora.stage import UserError
from services.ingest.stage import ingest_dataset
from services.preprocess.checks import inspect_dataset


class PreprocessServicer(stages_pb2_grpc.PreprocessServiceServicer):
    def __init__(self, store: ArtifactStore, authenticator: LedgerAuthenticator):
        self.store, self.authenticator = store, authenticator

    async def InspectDataset(self, request: stages_pb2.InspectDatasetRequest,
                             context: grpc.aio.ServicerContext) -> dataset_pb2.DatasetReport:
        """A dataset error is a report with ok=false and its errors; a bad parameter is INVALID_ARGUMENT."""
        await self.authenticator.tenant(context)
        params = await valid_params(request.params, context)
        return await asyncio.to_thread(self.inspect, params)

    def inspect(self, params) -> dataset_pb2.DatasetReport:
        job_id = f"inspect-{secrets.token_hex(8)}"
        try:
            with tempfile.TemporaryDirectory(prefix=f"{job_id}-") as work_dir:
                manifest = ingest_dataset(params, self.store, JobFiles(job_id), Path(work_dir) / "ingest")
                return inspect_dataset(manifest, params, LocalFiles(self.store, Path(work_dir) / "inputs"))
        except UserError as error:
            return dataset_pb2.DatasetReport(ok=False, errors=[str(error)])
        finally:
            self.store.remove(JobFiles(job_id).root)
