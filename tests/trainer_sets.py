"""Cached training sets for trainer tests, encoded with avlora.model.encode from the demo dataset's
bouncing-ball clips (picture and clicks in sync), in the format preprocessing writes."""

import json
import os
from contextlib import contextmanager
from pathlib import Path

import torch

from avlora.demo_data import plan_clips, render_audio, render_video
from avlora.model.components import load_encoders
from avlora.model.cache import to_bytes
from avlora.model.encode import audio_latent_count, encode_audio, encode_video, prompt_to_cache
from avlora.modes import MODES
from avlora.params import MODES as PARAMS
from avlora.settings import Settings
from avlora.store import LocalStore
from avlora.v1 import dataset_pb2
from avlora.stage import JobContext


def make_params(mode: str, **overrides):
    base = dict(training_data_url="upload://data", number_of_steps=100, rank=8, learning_rate=2e-3,
                number_of_frames=9, validation_number_of_frames=9, frame_rate=24, validation_frame_rate=24)
    return PARAMS[mode](**(base | overrides))


def _clip_tensors(encoders, clip, size, fps, frames, inverted=False, octave_up=False, spatial=1, temporal=1):
    width, height = size
    video = torch.from_numpy(render_video(clip, (width // spatial, height // spatial), inverted)[:frames:temporal])
    audio = torch.from_numpy(render_audio(clip, fps, octave_up))[:, :round(frames / fps * 16000)]  # stereo
    return (encode_video(encoders.vae, video.contiguous()),
            encode_audio(encoders.audio_vae, audio, audio_latent_count(frames, fps)))


def build_training_set(store, model_dir, job_id: str, params, clips: int = 4, size=(64, 64),
                       validation_size=(64, 64), validations: int = 1) -> str:
    """Writes every sample, validation and negative-prompt file and the TrainingSet; returns its URI."""
    encoders = load_encoders(model_dir)
    mode, frames, fps = params.mode, params.number_of_frames, params.frame_rate
    spatial, temporal = params.reference_factors
    keys = MODES[mode].cache_keys
    root = f"jobs/{job_id}/preprocess"

    prompt = encoders.caption

    def save(key: str, tensors: dict) -> str:
        return store.write_bytes(key, to_bytes(tensors))

    def clip_file(clip, frames_count, clip_fps, clip_size, caption) -> dict:
        if not MODES[mode].pairs:
            video, audio = _clip_tensors(encoders, clip, clip_size, clip_fps, frames_count)
            return {"video_latents": video, "audio_latents": audio, **prompt(caption)}
        video, audio = _clip_tensors(encoders, clip, clip_size, clip_fps, frames_count, True, True)
        ref_video, ref_audio = _clip_tensors(encoders, clip, clip_size, clip_fps, frames_count,
                                             spatial=spatial, temporal=temporal)
        return {"video_latents": video, "audio_latents": audio, "ref_video_latents": ref_video,
                "ref_audio_latents": ref_audio, **prompt(caption)}

    training_set = dataset_pb2.TrainingSet(job_id=job_id, mode=mode, width=size[0], height=size[1], frame_rate=fps)
    for clip in plan_clips(clips, frames, seed=0):
        caption = f"{params.trigger_phrase} a {clip.colour} ball bouncing with clicks".strip()
        tensors = clip_file(clip, frames, fps, size, caption)
        training_set.samples.add(name=clip.name, caption=caption, uri=save(f"{root}/{clip.name}.safetensors", tensors))
    for index, clip in enumerate(plan_clips(validations, params.validation_number_of_frames, seed=7)):
        tensors = clip_file(clip, params.validation_number_of_frames, params.validation_frame_rate,
                            validation_size, f"a {clip.colour} ball")
        tensors = {k: v for k, v in tensors.items() if k in keys.validation or not k.endswith("_latents")}
        training_set.validation.add(index=index, prompt="a ball",
                                    uri=save(f"{root}/validation{index}.safetensors", tensors))
    training_set.negative_prompt_uri = save(f"{root}/negative.safetensors", prompt(params.validation_negative_prompt))
    return store.write_bytes(f"{root}/training_set.pb", training_set.SerializeToString())


def build_random_set(store, model_dir, job_id: str, params, clips: int, grid=(2, 32, 32), audio_latents=1024) -> str:
    """A v2a training set of `clips` random-latent samples (video [128, *grid], audio [8, audio_latents,
    16], random prompt features of the model's widths) and one small validation entry; returns its URI."""
    connectors = json.loads((model_dir / "connectors" / "config.json").read_text())
    widths, root = (connectors["video_hidden_dim"], connectors["audio_hidden_dim"]), f"jobs/{job_id}/preprocess"
    generator = torch.Generator().manual_seed(0)
    mask = torch.tensor([0] * 24 + [1] * 8)

    def prompt() -> dict:
        return prompt_to_cache(*(torch.randn(32, width, generator=generator) for width in widths), mask)

    training_set = dataset_pb2.TrainingSet(job_id=job_id, mode=params.mode, width=64, height=64,
                                           frame_rate=params.frame_rate)
    for index in range(clips):
        tensors = {"video_latents": torch.randn(128, *grid, generator=generator),
                   "audio_latents": torch.randn(8, audio_latents, 16, generator=generator)} | prompt()
        uri = store.write_bytes(f"{root}/clip{index}.safetensors", to_bytes(tensors))
        training_set.samples.add(name=f"clip{index:02d}", caption="random", uri=uri)
    uri = store.write_bytes(f"{root}/validation0.safetensors",
                            to_bytes({"video_latents": torch.randn(128, 2, 2, 2, generator=generator)} | prompt()))
    training_set.validation.add(index=0, prompt="random", uri=uri)
    training_set.negative_prompt_uri = store.write_bytes(f"{root}/negative.safetensors", to_bytes(prompt()))
    return store.write_bytes(f"{root}/training_set.pb", training_set.SerializeToString())


class TrainerRun:
    """A cached training set in a fresh store, and JobContexts that train it."""

    def __init__(self, root: Path, model_dir: Path, mode: str = "v2a", validations: int = 1, **overrides):
        self.model_dir, self.store = model_dir, LocalStore(root / "store")
        self.params = make_params(mode, **overrides)
        self.uri = build_training_set(self.store, model_dir, "set", self.params, validations=validations)

    def context(self, job_id: str, input_uri: str = "", attempt: int = 1) -> JobContext:
        ctx = JobContext.for_test(job_id, self.params, self.store, input_uri or self.uri, stage="train",
                                    settings=Settings(model_dir=str(self.model_dir), store=str(self.store.root),
                                                      data_dir=self.store.root.parent))
        ctx.attempt = attempt
        return ctx


@contextmanager
def trainer_environment(variables: dict[str, str]):
    """AVLORA_TRAIN_* variables set, and one torch thread (the tiny model's small ops run fastest on one)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    saved = {key: os.environ.get(key) for key in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        torch.set_num_threads(threads)
