"""What the sound checks cost beside the rest of a clip's preprocessing (goal: under a tenth).

    .venv/bin/python bench/audio_figures.py                      # writes 5 test clips
    .venv/bin/python bench/audio_figures.py clip1.mp4 clip2.mov  # your own clips
    options: --resolution medium --aspect 1:1 --frames 89 --fps 24 --model-dir DIR (else the tiny model)

Per clip: `figures` (services/preprocess/diagnostics.source_figures: decoding the window's audio
at the clip's rate and its frames small and grey, loudness, peak, clipping, silence, sync), and
the clip's whole preprocessing: `checks` (plan_dataset, which includes the figures), `fit` and
`encode` (VAEs + text encoder). `share` = figures / (checks + fit + encode)."""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from preprocess_speed import clip_arguments, clip_bench, load_encoder, plan_clip, write_sample_clips  # noqa: E402
from services.preprocess.diagnostics import source_figures  # noqa: E402
from services.preprocess.modes import preprocessing_for  # noqa: E402


def main() -> None:
    args = clip_arguments(__doc__).parse_args()
    work, clips, params, store = clip_bench(args, "figures-bench-", sample_clips)
    mode = preprocessing_for(params)
    settings = mode.training_settings()
    encoder = load_encoder(args.model_dir, work)
    print(f"{'clip':28} {'figures':>8} {'checks':>7} {'fit':>7} {'encode':>7} {'share':>6}  warnings")
    worst = 0.0
    for path in clips:
        started = time.perf_counter()
        plan = plan_clip(store, work, path, params)
        checks = time.perf_counter() - started
        if not plan.items:
            print(f"{path.name:28} refused: {'; '.join(plan.report.errors) or plan.report.clips[0].reason}")
            continue
        item = plan.items[0]
        started = time.perf_counter()
        source_figures(item.target)
        figures = time.perf_counter() - started
        started = time.perf_counter()
        clip = mode.fit_item(item, settings)
        fit = time.perf_counter() - started
        started = time.perf_counter()
        encoder.training_sample(clip, settings)
        encode = time.perf_counter() - started
        share = figures / (checks + fit + encode)
        worst = max(worst, share)
        print(f"{path.name:28} {figures:8.3f} {checks:7.2f} {fit:7.2f} {encode:7.2f} {share:6.3f}  "
              f"{'; '.join(plan.report.clips[0].warnings) or '-'}")
    print(f"worst share: {worst:.3f} (goal: under 0.1)")


def sample_clips(folder: Path) -> list[Path]:
    from tests.media import write_events_clip

    events = write_events_clip(folder / "flashes_late_290ms.mp4", [0.45, 1.1, 1.35, 2.2, 2.9, 3.3], sound_offset=0.29,
                               seconds=4.5, size=(1280, 720))
    return [*write_sample_clips(folder), events]


if __name__ == "__main__":
    main()
