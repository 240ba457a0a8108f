"""One rank of a job trained on several GPUs, started by torch.distributed.run from
services/trainer/launcher.py: `python -m services.trainer.distributed JOB_FILE`.

Data parallel over the LoRA: every rank holds the same LoRA and optimizer, draws its own clip each
step (from the RNG all ranks share, plus its rank: a resume from the checkpoint stays
deterministic), and the gradients are averaged over the ranks before identical optimizer steps.
Rank 0 writes checkpoints, previews and outputs, and reports progress as JSON lines on stdout; any
rank that fails prints {"error": ...}. NCCL on GPUs, gloo on the CPU."""

import json
import os
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

from avlora.params import from_json
from avlora.settings import Settings
from avlora.store import JobFiles
from avlora.stores import open_store
from services.trainer.stage import train
from services.trainer.training import TrainerOptions

# Rank 0 renders the intermediate previews while the other ranks wait at the next all-reduce.
COLLECTIVE_TIMEOUT = timedelta(hours=1)


@dataclass
class World:
    rank: int
    size: int

    def step_generator(self, shared: torch.Generator) -> torch.Generator:
        """This rank's RNG for one step, seeded from the shared RNG (which the checkpoint keeps)."""
        seed = int(torch.randint(2**62, (1,), generator=shared))
        return torch.Generator().manual_seed(seed + self.rank)

    def average(self, params: list[torch.nn.Parameter], loss: float,
                parts: dict[str, float]) -> tuple[float, dict[str, float]]:
        """Averages the LoRA gradients and the losses over the ranks, in one all-reduce."""
        grads = [p.grad for p in params if p.grad is not None]
        losses = torch.tensor([loss, *parts.values()], device=grads[0].device)
        flat = torch.cat([g.reshape(-1) for g in grads] + [losses])
        dist.all_reduce(flat)
        flat /= self.size
        offset = 0
        for grad in grads:
            grad.copy_(flat[offset:offset + grad.numel()].view_as(grad))
            offset += grad.numel()
        loss, *values = flat[offset:].tolist()
        return loss, dict(zip(parts, values))


class RankContext:
    """The StageContext of one rank: reports go to stdout from
    rank 0 only; cancellation is the launcher's (the parent stops the processes)."""

    def __init__(self, job: dict, rank: int):
        self.job_id, self.params, self.input_uri = job["job_id"], from_json(job["params"]), job["input_uri"]
        self.settings = Settings(**job["settings"])
        self.store = open_store(job["store_url"])
        self.rank = rank

    @property
    def files(self) -> JobFiles:
        return JobFiles(self.job_id)

    def progress(self, done: int, total: int, unit: str, message: str = "", **metrics) -> None:
        if self.rank == 0:
            report(done=done, total=total, unit=unit, message=message, **metrics)

    def log(self, message: str) -> None:
        self.progress(0, 0, "", message)

    def cancelled(self) -> bool:
        return False

    def raise_if_cancelled(self) -> None:
        pass


def report(**fields) -> None:
    """One JSON line on stdout, in one write: the ranks share the pipe, and a write of one short
    line is not interleaved with another rank's (print's separate newline write could be)."""
    sys.stdout.flush()
    os.write(sys.stdout.fileno(), (json.dumps(fields) + "\n").encode())


def main(job_file: str) -> None:
    job = json.loads(Path(job_file).read_text())
    rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    options = TrainerOptions.from_env()
    device = torch.device(options.device)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    else:
        torch.set_num_threads(options.cpu_threads)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=COLLECTIVE_TIMEOUT)
    try:
        train(RankContext(job, rank), options, device, World(rank, size))
    except Exception as error:
        report(error=f"rank {rank}: {type(error).__name__}: {error}")
        raise
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
