"""The preprocess service's direct RPC: InspectDataset, a free dry run of every dataset check
(ingest's download, archive and media rules, then preprocessing's) without encoding."""

import asyncio
import secrets
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import grpc

from avlora.auth import LedgerAuthenticator
from avlora.params import upload_refs
from avlora.service import valid_params
from avlora.settings import Settings
from avlora.store import ArtifactStore, JobFiles, LocalFiles, LocalStore
from avlora.v1 import dataset_pb2, stages_pb2, stages_pb2_grpc
from avlora.stage import UserError, printable
from services.ingest.limits import IngestLimits
from services.ingest.stage import ingest_dataset
from services.preprocess.cancel import stop_if_asked
from services.preprocess.checks import inspect_dataset


class PreprocessServicer(stages_pb2_grpc.PreprocessServiceServicer):
    def __init__(self, store: ArtifactStore, authenticator: LedgerAuthenticator, limits: IngestLimits | None = None,
                 settings: Settings | None = None):
        self.store, self.authenticator, self.settings = store, authenticator, settings or Settings.from_env()
        self.limits = limits or IngestLimits.from_env()
        # Inspections download: they run on their own bounded pool, calls beyond the pool and its
        # queue (or beyond a tenant's share) are refused at once, and a call whose client is gone
        # stops, so slow URLs cannot exhaust the server and one tenant cannot hold it.
        self.pool = ThreadPoolExecutor(self.limits.inspect_workers, thread_name_prefix="inspect")
        self.places = self.limits.inspect_workers + self.limits.inspect_queue
        self.taken: Counter[str] = Counter()  # places held, by tenant
        self.lock = threading.Lock()

    def _take_place(self, tenant: str) -> str:
        """Holds a place for one of `tenant`'s calls; the refusal's text when there is none."""
        with self.lock:
            if self.taken[tenant] >= self.limits.inspect_per_tenant:
                return (f"too many InspectDataset calls of this tenant in progress (limit "
                        f"{self.limits.inspect_per_tenant}); retry later")
            if self.taken.total() >= self.places:
                return (f"too many InspectDataset calls in progress (limit {self.limits.inspect_workers} running + "
                        f"{self.limits.inspect_queue} waiting); retry later")
            self.taken[tenant] += 1
            return ""

    def _free_place(self, tenant: str) -> None:
        with self.lock:
            self.taken[tenant] -= 1
            if not self.taken[tenant]:
                del self.taken[tenant]

    async def InspectDataset(self, request: stages_pb2.InspectDatasetRequest,
                             context: grpc.aio.ServicerContext) -> dataset_pb2.DatasetReport:
        """A dataset error is a report with ok=false and its errors; a bad parameter is INVALID_ARGUMENT."""
        tenant = await self.authenticator.tenant(context)
        params = await valid_params(request.params, context)
        await self.authenticator.check_uploads(context, tenant, upload_refs(params))  # only the tenant's own
        if refusal := self._take_place(tenant):
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, refusal)
        client_gone = threading.Event()
        call = self.pool.submit(self.inspect, params, client_gone.is_set)
        call.add_done_callback(lambda _: self._free_place(tenant))  # when the work ends, not the RPC
        try:
            return await asyncio.wrap_future(call)
        except asyncio.CancelledError:
            client_gone.set()
            raise

    def inspect(self, params, client_gone=lambda: False) -> dataset_pb2.DatasetReport:
        """The dataset's report; stops (JobCancelled) soon after `client_gone` says so, whether it is
        downloading, probing or detecting scenes."""
        job_id = f"inspect-{secrets.token_hex(8)}"
        with self.settings.scratch_dir(f"{job_id}-") as work_dir:
            # what ingest extracts stays on local disk (an object store would get it only to hand it back)
            local = self.store if isinstance(self.store, LocalStore) else LocalStore(work_dir / "store")
            try:
                manifest = ingest_dataset(params, self.store, JobFiles(job_id), work_dir / "ingest",
                                          checkpoint=lambda: stop_if_asked(client_gone), limits=self.limits, output_store=local)
                return _printable(inspect_dataset(manifest, params, LocalFiles(local, work_dir / "inputs"),
                                                  should_stop=client_gone))
            except UserError as error:
                return dataset_pb2.DatasetReport(ok=False, errors=[str(error)])
            finally:
                local.remove(JobFiles(job_id).root)


def _printable(report: dataset_pb2.DatasetReport) -> dataset_pb2.DatasetReport:
    """The report with control characters escaped in its errors and file names (a zip's entry
    names can hold any byte)."""
    errors = [printable(text) for text in report.errors]
    del report.errors[:]
    report.errors.extend(errors)
    for item in (*report.clips, *report.ignored):
        item.name, item.reason = printable(item.name), printable(item.reason)
    return report
