"""Training checkpoints in the artifact store: LoRA weights, optimizer state, the sampling RNG, the
step and the validation losses; written through a scratch file and streamed in (never serialised
whole in memory), loadable with torch.load(weights_only=True)."""

import torch

from avlora.store import ArtifactStore, JobFiles


def save_checkpoint(store: ArtifactStore, job_id: str, state: dict) -> str:
    return store.put_written(JobFiles(job_id).checkpoint, lambda path: torch.save(state, path))


def load_checkpoint(store: ArtifactStore, job_id: str) -> dict | None:
    key = JobFiles(job_id).checkpoint
    if not store.exists(key):
        return None
    with store.local_file(key) as path:
        return torch.load(path, map_location="cpu", weights_only=True)
