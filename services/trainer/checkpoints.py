"""Training checkpoints in the artifact store: LoRA weights, optimizer state, the sampling RNG, the
step and the validation losses, written atomically and loadable with torch.load(weights_only=True)."""

import io

import torch

from avlora.store import ArtifactStore


def checkpoint_key(job_id: str) -> str:
    return f"jobs/{job_id}/train/checkpoint.pt"


def save_checkpoint(store: ArtifactStore, job_id: str, state: dict) -> str:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return store.write_bytes(checkpoint_key(job_id), buffer.getvalue())


def load_checkpoint(store: ArtifactStore, job_id: str) -> dict | None:
    key = checkpoint_key(job_id)
    if not store.exists(key):
        return None
    return torch.load(store.path(key), map_location="cpu", weights_only=True)
