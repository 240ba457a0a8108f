"""Which files belong together: av2av `<name>_start` / `<name>_end` pairs, and each clip's caption
(`<name>.txt`, the same base name as the video, or as the pair). File names are unique across the
archive (ingest's rule), so files are matched by base name whatever folder they are in."""

from dataclasses import dataclass
from pathlib import Path

from avlora.store import LocalFiles
from avlora.v1 import dataset_pb2

START, END = "_start", "_end"
MAX_CAPTION_BYTES = 64 * 1024


@dataclass(frozen=True)
class ClipPair:
    """An av2av pair: the reference clip (`_start`) and the target clip (`_end`)."""

    name: str
    start: dataset_pb2.ManifestFile
    end: dataset_pb2.ManifestFile


def stem(name: str) -> str:
    return Path(name).stem


def pair_clips(videos: list[dataset_pb2.ManifestFile]) -> tuple[list[ClipPair], list[str]]:
    """Pairs `_start` with `_end` clips by base name; returns the pairs (by name) and one error per
    clip that cannot be paired."""
    starts: dict[str, list] = {}
    ends: dict[str, list] = {}
    loose = []
    for video in videos:
        base = stem(video.name)
        if base.lower().endswith(START):
            starts.setdefault(base[: -len(START)], []).append(video)
        elif base.lower().endswith(END):
            ends.setdefault(base[: -len(END)], []).append(video)
        else:
            loose.append(video.name)
    errors = [unpaired_error(loose, paired=bool(starts or ends))] if loose else []
    for name, group, kind in [(n, g, "_start") for n, g in starts.items()] + [(n, g, "_end") for n, g in ends.items()]:
        if len(group) > 1:
            errors.append(f"{name} has more than one {kind} clip: " + ", ".join(sorted(v.name for v in group)))
    for name in sorted(ends.keys() - starts.keys()):
        errors.append(f"{ends[name][0].name} is a target missing its reference (no {name}_start clip)")
    for name in sorted(starts.keys() - ends.keys()):
        errors.append(f"{starts[name][0].name} has no matching target (no {name}_end clip)")
    pairs = [ClipPair(name, starts[name][0], ends[name][0]) for name in sorted(starts.keys() & ends.keys())]
    return pairs, errors


def unpaired_error(names: list[str], paired: bool) -> str:
    """One error for every clip named neither `_start` nor `_end`; when no clip is, the dataset is
    most likely a v2a one submitted as av2av."""
    if len(names) == 1:
        base = stem(names[0])
        error = (f"{names[0]} is neither a reference nor a target: name it {base}_start or {base}_end "
                 "(av2av datasets are <name>_start / <name>_end pairs)")
    else:
        error = (f"{len(names)} clips are neither a reference nor a target (av2av datasets are "
                 f"<name>_start / <name>_end pairs): {', '.join(names)}")
    if not paired:
        error += ("; no clip is named _start or _end: this looks like a v2a dataset (single clips), "
                  "submit it with `avlora submit v2a`")
    return error


def read_captions(files: list[dataset_pb2.ManifestFile], local: LocalFiles) -> dict[str, str]:
    """Caption text by base name, whitespace collapsed (UTF-8, with a Latin-1 fallback)."""
    captions = {}
    for file in files:
        if file.kind == dataset_pb2.CAPTION:
            with open(local(file.uri), "rb") as handle:
                data = handle.read(MAX_CAPTION_BYTES)
            try:
                text = data.decode("utf-8-sig")
            except UnicodeDecodeError:
                text = data.decode("latin-1")
            captions[stem(file.name)] = " ".join(text.split())
    return captions


def unused_captions(files: list[dataset_pb2.ManifestFile], used: set[str]) -> list[dataset_pb2.IgnoredFile]:
    return [dataset_pb2.IgnoredFile(name=file.name, reason=f"caption for no clip: no video named {stem(file.name)}")
            for file in files if file.kind == dataset_pb2.CAPTION and stem(file.name) not in used]


def with_trigger(trigger_phrase: str, caption: str) -> str:
    """The trigger phrase (when set) prepended to the caption; either may be empty."""
    return " ".join(part for part in (trigger_phrase.strip(), caption) if part)
