"""One job on several GPUs: `run_distributed` starts torch's own launcher (torch.distributed.run) with
one process per GPU running services/trainer/distributed.py, forwards rank 0's progress (JSON lines
on stdout) to the job's context, stops the launcher when the job is cancelled, and raises a rank's
error. The processes read the job from a JSON file in a scratch folder. Should this process
die, rank 0's next report hits the closed pipe and the launcher stops the other ranks."""

import contextvars
import json
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

import torch

from services.trainer import status

STOP_GRACE_S = 60  # the launcher gives its workers 30 s to exit after SIGTERM before killing them


def training_processes(options) -> int:
    """How many processes one job trains on: AVLORA_TRAIN_PROCESSES, else one per visible GPU."""
    return options.processes or (torch.cuda.device_count() if torch.cuda.is_available() else 1)


def write_job_file(ctx, folder: Path) -> str:
    """What each rank needs to rebuild the job, as a JSON file in `folder`; returns its path."""
    job = {"job_id": ctx.job_id, "params": ctx.params.model_dump_json(), "input_uri": ctx.input_uri,
           "store_url": ctx.store.url,  # what the ranks need of the settings (no credentials)
           "settings": {name: str(getattr(ctx.settings, name)) for name in ("model_dir", "data_dir", "scratch")}}
    path = folder / "distributed.json"
    path.write_text(json.dumps(job, default=str))
    return str(path)


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM to the launcher's process group (it passes it on to its workers), then SIGKILL."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _forward(ctx, line: str) -> str:
    """Passes a rank-0 report on to the context; returns the error text when the line is a rank's
    error. Lines that are not reports (a library printing) go to stderr."""
    try:
        report = json.loads(line)
    except json.JSONDecodeError:
        report = None
    if not isinstance(report, dict):
        sys.stderr.write(line)
        return ""
    if "error" in report:
        return report["error"]
    ctx.progress(**report)
    if report["unit"] == "steps":
        status.update(report["done"])
    return ""


def run_distributed(ctx, processes: int) -> None:
    """Trains the job on `processes` ranks; rank 0 writes the job's outputs, as in-process training."""
    with ctx.settings.scratch_dir(f"train-{ctx.job_id}-") as folder:
        _launch(ctx, processes, write_job_file(ctx, folder))


def _launch(ctx, processes: int, job_file: str) -> None:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
               "-m", "services.trainer.distributed", job_file]
    ctx.log(f"training on {processes} processes")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    lines: queue.Queue[str | None] = queue.Queue()

    def read_stdout() -> None:
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    def pass_on_stderr() -> None:  # through this process's stderr: a JSON log line, naming the job
        for line in process.stderr:
            sys.stderr.write(line)

    threading.Thread(target=read_stdout, daemon=True).start()
    threading.Thread(target=contextvars.copy_context().run, args=(pass_on_stderr,), daemon=True).start()
    error = ""
    try:
        while (line := _next_line(ctx, lines)) is not None:
            error = error or _forward(ctx, line)
    except BaseException:  # cancelled (JobCancelled), or the stage's thread is failing
        _stop(process)
        raise
    code = process.wait()
    if code != 0:
        raise RuntimeError(f"distributed training failed (exit status {code}): {error or 'no error reported'}")


def _next_line(ctx, lines: queue.Queue) -> str | None:
    """The launcher's next stdout line (None at its end); JobCancelled once the job is cancelled."""
    while True:
        ctx.raise_if_cancelled()
        try:
            return lines.get(timeout=0.5)
        except queue.Empty:
            continue
