"""The cached training set as tensors (the keys preprocessing writes: avlora.model.cache). Samples
are read from the store when a step needs them (`StoredSamples`): a few ahead in a background
thread, pinned when training on a GPU, none kept after use, so host memory does not grow with the
number of clips."""

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import NamedTuple

import torch

from avlora.model.cache import (
    AUDIO_LATENTS, PROMPT_AUDIO, PROMPT_KEYS, PROMPT_MASK, PROMPT_VIDEO, REF_AUDIO_LATENTS, REF_VIDEO_LATENTS,
    VIDEO_LATENTS, from_bytes,
)
from avlora.model.encode import prompt_from_cache
from avlora.modes import ModeKeys
from avlora.store import ArtifactStore
from avlora.v1 import dataset_pb2

# Held out for the validation loss: every sample whose name hashes into this fraction, at least one
# when there are HOLDOUT_MIN_SAMPLES or more. Below, a held-out clip would cost the training too much
# (a tenth of a 10-clip set): every clip trains, and the loss (fixed noise and sigmas) is measured on
# the training clips. What was measured is reported as `validation_loss_on`.
HOLDOUT_FRACTION = 0.1
HOLDOUT_MIN_SAMPLES = 20
HELD_OUT = "held_out"
TRAINING_CLIPS = "training_clips"
PREFETCH = 2  # samples read ahead of the training steps


@dataclass
class Prompt:
    """A cached prompt, kept compact: the valid rows of its projected features (avlora.model.cache)."""
    video: torch.Tensor  # [n_valid, video width]
    audio: torch.Tensor  # [n_valid, audio width]
    mask: torch.Tensor   # [L]

    def expand(self, device, dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(video [1, L, Dv], audio [1, L, Da] with zero rows where padded, mask [1, L]) on the device."""
        move = lambda t: t.to(device, dtype, non_blocking=True)  # noqa: E731
        return prompt_from_cache({PROMPT_VIDEO: move(self.video), PROMPT_AUDIO: move(self.audio),
                                  PROMPT_MASK: self.mask.to(device, non_blocking=True)})

    def pinned(self) -> "Prompt":
        return Prompt(self.video.pin_memory(), self.audio.pin_memory(), self.mask.pin_memory())


def _prompt(tensors: dict[str, torch.Tensor]) -> Prompt:
    return Prompt(tensors[PROMPT_VIDEO], tensors[PROMPT_AUDIO], tensors[PROMPT_MASK])


@dataclass
class Sample:
    """One cached clip (or pair); latents are normalised and unpacked, with a batch dimension
    (`to` moves the latents; the prompt stays compact on the CPU until encode_text)."""
    name: str
    prompt: Prompt
    video: torch.Tensor | None = None      # [1, 128, F', H', W']
    audio: torch.Tensor | None = None      # [1, 8, T', 16]
    ref_video: torch.Tensor | None = None  # av2av reference
    ref_audio: torch.Tensor | None = None

    def to(self, device: torch.device, dtype: torch.dtype) -> "Sample":
        move = lambda t: None if t is None else t.to(device, dtype, non_blocking=True)  # noqa: E731
        return Sample(self.name, self.prompt, move(self.video), move(self.audio), move(self.ref_video),
                      move(self.ref_audio))

    def pinned(self) -> "Sample":
        """The same sample in page-locked host memory (fast asynchronous copies to a GPU)."""
        pin = lambda t: None if t is None else t.pin_memory()  # noqa: E731
        return Sample(self.name, self.prompt.pinned(), pin(self.video),
                      pin(self.audio), pin(self.ref_video), pin(self.ref_audio))


class StoredSamples(Sequence):
    """Cached samples (TrainingSet entries: `.name`, `.uri`) read from the store on use. `prefetch(i)`
    reads sample i in a background thread (at most PREFETCH ahead, the oldest dropped beyond);
    `pin`: the samples read come in page-locked memory (fast copies to a GPU)."""

    def __init__(self, store: ArtifactStore, entries, keys: ModeKeys, pin: bool = False):
        self.store, self.entries, self.keys, self.pin = store, list(entries), keys, pin
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="samples")
        self._ahead: OrderedDict[int, Future] = OrderedDict()

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> Sample:
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        future = self._ahead.pop(index % len(self), None)
        return future.result() if future else self._load(index)

    def prefetch(self, index: int) -> None:
        if index in self._ahead:
            return
        while len(self._ahead) >= PREFETCH:
            self._ahead.popitem(last=False)[1].cancel()
        self._ahead[index] = self._pool.submit(self._load, index)

    def _load(self, index: int) -> Sample:
        entry = self.entries[index]
        sample = load_sample(self.store, entry.name, entry.uri, self.keys)
        return sample.pinned() if self.pin else sample

    def close(self) -> None:
        self._ahead.clear()
        self._pool.shutdown(wait=True, cancel_futures=True)


def load_prompt(store: ArtifactStore, uri: str) -> Prompt:
    return _prompt(from_bytes(store.read_bytes(uri), uri))


def load_sample(store: ArtifactStore, name: str, uri: str, keys: ModeKeys, kind: str = "training") -> Sample:
    """Reads one cached sample (`kind`: "training" or "validation", whose keys `keys` names); a file
    missing a key is an internal error."""
    tensors = from_bytes(store.read_bytes(uri), uri)
    missing = [k for k in (*getattr(keys, kind), *PROMPT_KEYS) if k not in tensors]
    if missing:
        raise ValueError(f"cached {kind} sample {name} ({uri}) lacks {', '.join(missing)}")
    batch = lambda key: tensors[key].unsqueeze(0).float() if key in tensors else None  # noqa: E731
    return Sample(name=name, prompt=_prompt(tensors), video=batch(VIDEO_LATENTS), audio=batch(AUDIO_LATENTS),
                  ref_video=batch(REF_VIDEO_LATENTS), ref_audio=batch(REF_AUDIO_LATENTS))


def _held_out(name: str) -> bool:
    digest = hashlib.sha256(name.encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < HOLDOUT_FRACTION


class Split(NamedTuple):
    train: list
    validation: list
    validation_loss_on: str  # HELD_OUT or TRAINING_CLIPS


def split_holdout(samples: list) -> Split:
    """The training and validation samples (anything with a `.name`: TrainingSet entries, Samples).
    Below HOLDOUT_MIN_SAMPLES, every sample trains and the loss is measured on them all."""
    if len(samples) < HOLDOUT_MIN_SAMPLES:
        return Split(samples, samples, TRAINING_CLIPS)
    held = {s.name for s in samples if _held_out(s.name)}
    held = held or {min(s.name for s in samples)}
    return Split([s for s in samples if s.name not in held], [s for s in samples if s.name in held], HELD_OUT)


def load_training_set(store: ArtifactStore, uri: str) -> dataset_pb2.TrainingSet:
    return dataset_pb2.TrainingSet.FromString(store.read_bytes(uri))
