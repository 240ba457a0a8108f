"""Preprocessing speed per clip beside PyAV's plain decode of the same clip, and peak memory.

    .venv/bin/python bench/preprocess_speed.py                      # writes 4 test clips
    .venv/bin/python bench/preprocess_speed.py clip1.mp4 clip2.mov  # your own clips
    options: --resolution medium --aspect 1:1 --frames 89 --fps 24 --model-dir DIR (else the tiny model)

Per clip: `checks` (probe, audio requirement, length rule, silence check), `fit` (frames into the
bucket and audio over the window), their ratio to `decode` (PyAV decoding every video and audio
frame of the whole clip, nothing else), and `encode` (VAEs + text encoder) reported apart."""

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import av

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from avlora.params import V2AParams  # noqa: E402
from avlora.store import LocalFiles, LocalStore  # noqa: E402
from avlora.v1 import dataset_pb2  # noqa: E402
from services.preprocess.modes import preprocessing_for  # noqa: E402
from services.preprocess.plan import plan_dataset  # noqa: E402


def plain_decode(path: Path) -> float:
    started = time.perf_counter()
    with av.open(str(path)) as container:
        container.streams.video[0].thread_type = "AUTO"
        for _ in container.decode(*container.streams.video[:1], *container.streams.audio[:1]):
            pass
    return time.perf_counter() - started


def write_sample_clips(folder: Path) -> list[Path]:
    from tests.media import write_clip

    specs = [("landscape_720p.mp4", dict(frames=240, fps=24, size=(1280, 720), audio_rate=48000, audio_channels=2)),
             ("portrait_60fps.mov", dict(frames=300, fps=60, size=(540, 960), audio_rate=44100)),
             ("square_vfr.mkv", dict(frames=120, fps=30, size=(720, 720), variable_frame_rate=True)),
             ("surround.mp4", dict(frames=150, fps=25, size=(960, 540), audio_rate=48000, audio_channels=6))]
    return [write_clip(folder / name, **spec) for name, spec in specs]


def clip_arguments(doc: str) -> argparse.ArgumentParser:
    """The options of the per-clip preprocessing benchmarks (this one and bench/audio_figures.py)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("clips", nargs="*", type=Path)
    parser.add_argument("--resolution", default="medium")
    parser.add_argument("--aspect", default="1:1")
    parser.add_argument("--frames", type=int, default=89)
    parser.add_argument("--fps", type=int, default=24)
    parser.add_argument("--model-dir", default="")
    return parser


def job_params(args) -> V2AParams:
    return V2AParams(training_data_url="https://bench/data.zip", resolution=args.resolution,
                     aspect_ratio=args.aspect, number_of_frames=args.frames, frame_rate=args.fps,
                     auto_scale_input=True)


def clip_bench(args, prefix: str, sample_clips) -> tuple[Path, list[Path], V2AParams, LocalStore]:
    """(scratch folder, the clips: the given ones or `sample_clips(folder)`, job params, a store),
    and the bucket printed."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    clips = args.clips or sample_clips(work / "clips")
    params = job_params(args)
    settings = preprocessing_for(params).training_settings()
    print(f"bucket {settings.size[0]}x{settings.size[1]}, {settings.frames} frames at {settings.frame_rate} fps")
    return work, clips, params, LocalStore(work / "store")


def plan_clip(store: LocalStore, work: Path, path: Path, params: V2AParams):
    """Every dataset check of a dataset of this one clip: the DatasetPlan."""
    key = f"bench/{path.name}"
    store.put_file(key, path)
    manifest = dataset_pb2.Manifest(job_id="bench")
    manifest.files.add(name=path.name, uri=store.uri(key), kind=dataset_pb2.VIDEO)
    return plan_dataset(manifest, params, LocalFiles(store, work / "inputs"))


def main() -> None:
    parser = clip_arguments(__doc__)
    parser.add_argument("--no-encode", action="store_true")
    args = parser.parse_args()
    work, clips, params, store = clip_bench(args, "preprocess-bench-", write_sample_clips)
    mode = preprocessing_for(params)
    settings = mode.training_settings()
    print(f"{'clip':28} {'seconds':>7} {'checks':>7} {'fit':>7} {'decode':>7} {'ratio':>6}")
    planned = []
    for path in clips:
        started = time.perf_counter()
        plan = plan_clip(store, work, path, params)
        checked = time.perf_counter()
        if not plan.items:
            print(f"{path.name:28} refused: {'; '.join(plan.report.errors) or plan.report.clips[0].reason}")
            continue
        mode.fit_item(plan.items[0], settings)
        fitted = time.perf_counter()
        decode = plain_decode(path)
        duration = plan.report.clips[0].duration_seconds
        print(f"{path.name:28} {duration:7.1f} {checked - started:7.2f} {fitted - checked:7.2f} {decode:7.2f} "
              f"{(fitted - started) / decode:6.2f}")
        planned.append(plan.items[0])
    print(f"peak memory, checks and fitting: {peak_mb():.0f} MB (max RSS of this process)")
    if args.no_encode:
        return
    encoder = load_encoder(args.model_dir, work)
    for item in planned:
        clip = mode.fit_item(item, settings)
        started = time.perf_counter()
        encoder.training_sample(clip, settings)
        print(f"{item.name:28} encode {time.perf_counter() - started:7.2f} s")
    print(f"peak memory, with encoding: {peak_mb():.0f} MB")


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_encoder(model_dir: str, work: Path):
    from services.preprocess.encoding import DatasetEncoder

    if not model_dir:
        from avlora.model.tiny import write_tiny_model

        model_dir = str(write_tiny_model(work / "tiny-model"))
        print(f"encoding with the tiny model in {model_dir}")
    return DatasetEncoder(model_dir)


if __name__ == "__main__":
    main()
