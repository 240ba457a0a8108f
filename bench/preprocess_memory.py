"""Peak memory (max RSS) of preprocessing one clip at the worst legal parameters, each case in a
fresh child process: fitting (decode, crop, resize, audio) and encoding through the stage's
encoder (the tiny model unless --model-dir; on a CPU the VAE encodes these clips in tiles).

    .venv/bin/python bench/preprocess_memory.py            # every case
    .venv/bin/python bench/preprocess_memory.py --no-encode # fitting only (fast)
    .venv/bin/python bench/preprocess_memory.py --case v2a-high-1:1

The goal (issue 11) is a peak under 4 GB in every case."""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

GOAL_MB = 4096
URL = "https://bench/data.zip"
# name: (mode, parameters). 121 frames, the high buckets, short clips stretched by auto_scale_input.
CASES = {
    "v2a-high-1:1": ("v2a", dict(resolution="high", aspect_ratio="1:1")),
    "v2a-high-16:9": ("v2a", dict(resolution="high", aspect_ratio="16:9")),
    "av2av-high-1:1-reference": ("av2av", dict(resolution="high", aspect_ratio="1:1")),
}
COMMON = dict(training_data_url=URL, number_of_frames=121, frame_rate=24, auto_scale_input=True,
              validation_resolution="high", validation_aspect_ratio="1:1", validation_number_of_frames=121)


def child(case: str, folder: Path, model_dir: str, encode: bool) -> dict:
    from avlora.modes import MODES
    from avlora.store import LocalFiles, LocalStore
    from avlora.v1 import dataset_pb2
    from services.preprocess.modes import preprocessing_for
    from services.preprocess.plan import plan_dataset

    mode_name, overrides = CASES[case]
    params = MODES[mode_name].params(**COMMON | overrides)
    store = LocalStore(folder / "store")
    manifest = dataset_pb2.Manifest(job_id="bench")
    names = ["clip_start.mp4", "clip_end.mp4"] if MODES[mode_name].pairs else ["clip.mp4"]
    for name in names:
        store.put_file(f"bench/{name}", folder / "clip.mp4")
        manifest.files.add(name=name, uri=store.uri(f"bench/{name}"), kind=dataset_pb2.VIDEO)
    started = time.perf_counter()
    plan = plan_dataset(manifest, params, LocalFiles(store, folder / "inputs"))
    assert plan.items, plan.report
    mode = preprocessing_for(params)
    settings = mode.training_settings()
    clip = mode.fit_item(plan.items[0], settings)
    result = {"fit_mb": peak_mb(), "fit_s": time.perf_counter() - started}
    if encode:
        from services.preprocess.encoding import DatasetEncoder
        started = time.perf_counter()
        DatasetEncoder(model_dir).training_sample(clip, settings)
        result |= {"encode_mb": peak_mb(), "encode_s": time.perf_counter() - started}
    return result


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", choices=sorted(CASES), action="append")
    parser.add_argument("--model-dir", default="")
    parser.add_argument("--no-encode", action="store_true")
    parser.add_argument("--frames", type=int, default=121, help="number_of_frames (121: the worst case)")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        COMMON.update(number_of_frames=args.frames, validation_number_of_frames=args.frames)
        print(json.dumps(child(args.child[0], Path(args.child[1]), args.model_dir, not args.no_encode)))
        return
    with tempfile.TemporaryDirectory(prefix="preprocess-memory-") as name:
        folder = Path(name)
        from tests.test_preprocess_memory import write_long_clip

        write_long_clip(folder / "clip.mp4", seconds=3)  # 1080p, 72 frames: stretched to 121 by auto_scale_input
        model_dir = args.model_dir
        if not model_dir and not args.no_encode:
            from avlora.model.tiny import write_tiny_model

            model_dir = str(write_tiny_model(folder / "tiny-model"))
        print(f"{'case':28} {'fit MB':>8} {'fit s':>7} {'encode MB':>10} {'encode s':>9}  goal < {GOAL_MB} MB")
        for case in args.case or sorted(CASES):
            command = [sys.executable, __file__, "--child", case, str(folder), "--model-dir", model_dir,
                       "--frames", str(args.frames)]
            run = subprocess.run(command + (["--no-encode"] if args.no_encode else []), capture_output=True, text=True)
            if run.returncode:
                errors = [line for line in run.stderr.splitlines() if "Error" in line or "error" in line]
                print(f"{case:28} failed (exit {run.returncode}): {errors[-1:] or run.stderr[-300:]}")
                continue
            figures = json.loads(run.stdout.strip().splitlines()[-1])
            encode = (f"{figures['encode_mb']:10.0f} {figures['encode_s']:9.1f}" if "encode_mb" in figures
                      else f"{'-':>10} {'-':>9}")
            print(f"{case:28} {figures['fit_mb']:8.0f} {figures['fit_s']:7.1f} {encode}")


if __name__ == "__main__":
    main()
