"""`avlora download JOB [--dir D]` and `avlora watch JOB --download [--dir D]`: a job's outputs,
streamed through the DownloadArtifact RPC (works from any machine, with any store)."""

import os
import tempfile
from pathlib import Path

import grpc

from avlora.client import Endpoints, call
from avlora.job_state import output_uris, state_name
from avlora.v1 import jobs_pb2


def download_outputs(endpoints: Endpoints, job: jobs_pb2.Job, folder: Path) -> list[Path]:
    """Writes every output the job lists into `folder` (each file complete, or not at all)."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for field in output_uris(job.outputs):
        replies = endpoints.jobs().DownloadArtifact(
            jobs_pb2.DownloadArtifactRequest(job_id=job.id, name=field), metadata=endpoints.auth, timeout=3600)
        fd, partial = tempfile.mkstemp(dir=folder, prefix=".download-")
        try:
            with os.fdopen(fd, "wb") as out:
                name, size = "", 0
                for chunk in replies:
                    name, size = name or chunk.name, size or chunk.size
                    out.write(chunk.data)
            if Path(partial).stat().st_size != size:
                raise SystemExit(f"error: {field}: got {Path(partial).stat().st_size} of {size} bytes")
            target = folder / Path(name).name
            os.replace(partial, target)
            written.append(target)
        except grpc.RpcError as error:
            raise SystemExit(f"error: {field}: {error.code().name}: {error.details()}") from None
        finally:
            Path(partial).unlink(missing_ok=True)
    return written


def cmd_download(args) -> int:
    endpoints = Endpoints.find(args.data_dir)
    job = call(endpoints.jobs().GetJob, jobs_pb2.GetJobRequest(job_id=args.job), metadata=endpoints.auth,
                    timeout=30)
    if job.state != jobs_pb2.SUCCEEDED:
        raise SystemExit(f"job {job.id} is {state_name(job.state)}: no outputs to download")
    for path in download_outputs(endpoints, job, Path(args.dir or job.id)):
        print(path)
    return 0


def register(commands, data_dir_parent) -> None:
    """Adds `download`, and `--download/--dir` to `watch`."""
    download = commands.add_parser("download", parents=[data_dir_parent], help="download a job's outputs")
    download.add_argument("job")
    download.add_argument("--dir", help="where to write them (default: a folder named after the job)")
    download.set_defaults(run=cmd_download)
    watch = commands.choices["watch"]
    watch.add_argument("--download", action="store_true", help="download the outputs when the job succeeds")
    watch.add_argument("--dir", help="where --download writes (default: a folder named after the job)")
