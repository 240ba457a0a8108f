"""A real StageWorker process for the spine tests: its stage function records which worker handled
which job (one line per call in $SPINE_LOG) and takes $SPINE_SECONDS; jobs named bad* are a user
error, jobs named crash* crash the stage with control characters in the exception's text."""

import os
import time

from avlora.stage_main import run_stage_process
from avlora.stage import UserError


def record_and_wait(ctx):
    if ctx.job_id.startswith("bad"):
        raise UserError(f"{ctx.job_id}.mp4 has no audio track")
    if ctx.job_id.startswith("crash"):
        raise RuntimeError(f"cannot decode {ctx.job_id}\x1b[31m.mp4\r\nforged line")
    with open(os.environ["SPINE_LOG"], "a") as log:
        log.write(f"{ctx.job_id} {os.getpid()} {ctx.attempt}\n")
    time.sleep(float(os.environ.get("SPINE_SECONDS", "0.2")))
    return f"store://jobs/{ctx.job_id}/ingest/manifest.pb"


if __name__ == "__main__":
    # The same entry point as `python -m services.ingest` (signals, gRPC health), with this stage function.
    run_stage_process("ingest", record_and_wait, [])
