"""What this trainer process is doing now, for GetTrainerStatus (one job at a time per process)."""

import threading
from dataclasses import dataclass


@dataclass
class TrainerActivity:
    job_id: str = ""
    step: int = 0
    total_steps: int = 0
    device: str = ""
    model_dir: str = ""


_lock = threading.Lock()
_current = TrainerActivity()


def begin(job_id: str, total_steps: int, device: str, model_dir: str) -> None:
    global _current
    with _lock:
        _current = TrainerActivity(job_id, 0, total_steps, device, model_dir)


def update(step: int) -> None:
    with _lock:
        _current.step = step


def end() -> None:
    global _current
    with _lock:
        _current = TrainerActivity(device=_current.device)  # idle: the configured model directory


def current() -> TrainerActivity:
    with _lock:
        return TrainerActivity(**vars(_current))
