"""Whether a LoRA is any good, as outputs (docs/evidence.md): the final previews rendered once with
the LoRA and once by the base model (the LoRA off; same seed, noise and guidance), the v2a previews
muxed onto their validation videos, the audio figures of every preview and training clip
(`Outputs.audio_figures` and metrics.json) and a spectrogram picture, the LoRA's beside the base's."""

import json

import numpy as np
import torch
from google.protobuf import json_format

from avlora.audio_figures import audio_figures, spectrogram_png
from avlora.v1 import dataset_pb2, figures_pb2, jobs_pb2
from services.trainer.media import write_reel
from services.trainer.previews import PreviewClip, PreviewItem, PreviewRenderer, lora_disabled


def grey(frames: torch.Tensor) -> np.ndarray:
    """uint8 RGB [F, H, W, 3] -> uint8 luma [F, H, W] (BT.601 weights)."""
    return (frames.float() @ torch.tensor([0.299, 0.587, 0.114])).round().to(torch.uint8).numpy()


def preview_figures(clips: list[PreviewClip], fps: int, rate: int, source: str) -> list[figures_pb2.AudioFigures]:
    figures = []
    for number, clip in enumerate(clips, 1):
        picture = None if clip.picture is None else grey(clip.picture)
        times = None if picture is None else np.arange(len(picture)) / fps
        figures.append(audio_figures(clip.sound, rate, picture, times, name=f"preview {number}", source=source))
    return figures


def training_figures(report: dataset_pb2.DatasetReport) -> list[figures_pb2.AudioFigures]:
    """The figures preprocessing measured on every clip used (training_set.report)."""
    return [clip.figures for clip in report.clips if clip.accepted and clip.HasField("figures")]


def metrics_json(figures: list[figures_pb2.AudioFigures]) -> str:
    return json.dumps({"audio_figures": [json_format.MessageToDict(f, preserving_proto_field_name=True,
                                                                   always_print_fields_with_no_presence=True)
                                         for f in figures]}, indent=2)


def write_final_previews(ctx, renderer: PreviewRenderer, items: list[PreviewItem],
                         training_set: dataset_pb2.TrainingSet, outputs: jobs_pb2.Outputs, progress) -> None:
    """Renders the LoRA's and the base model's previews and fills every evidence output."""
    store, files, strategy = ctx.store, ctx.files, renderer.strategy
    suffix, fps, rate = strategy.preview_suffix, items[0].fps, renderer.rate

    def put(name: str, write) -> str:
        return store.put_written(files.output(name), write)

    ctx.log("rendering validation previews")
    lora = renderer.clips(items, ctx.cancelled, progress)
    setattr(outputs, strategy.output_field, put(f"preview{suffix}", lambda p: renderer.write(lora, p, fps)))
    ctx.log("rendering the base model's previews (the LoRA off, same seed, noise and guidance)")
    with lora_disabled(renderer.model.transformer):
        base = renderer.clips(items, ctx.cancelled, progress, label="base preview")
    ctx.raise_if_cancelled()
    setattr(outputs, f"{strategy.output_field}_base", put(f"preview_base{suffix}", lambda p: renderer.write(base, p, fps)))
    if not strategy.decodes_video:  # v2a: the soundtracks on their pictures
        for clip, picture in zip(lora + base, renderer.pictures(items) * 2):
            clip.picture = picture
        outputs.preview_video = put("preview_video.mp4", lambda p: write_reel(
            p, [(clip.picture, clip.sound) for clip in lora], fps, rate))
        outputs.preview_video_base = put("preview_video_base.mp4", lambda p: write_reel(
            p, [(clip.picture, clip.sound) for clip in base], fps, rate))
    figures = [*preview_figures(lora, fps, rate, "lora"), *preview_figures(base, fps, rate, "base"),
               *training_figures(training_set.report)]
    outputs.audio_figures.extend(figures)
    outputs.metrics_file = store.write_bytes(files.output("metrics.json"), metrics_json(figures).encode())
    rows = [(f"preview {number}", ours.sound, theirs.sound) for number, (ours, theirs) in enumerate(zip(lora, base), 1)]
    outputs.spectrograms = put("spectrograms.png", lambda p: spectrogram_png(p, rows, rate))
