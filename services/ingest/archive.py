"""Safe zip checks and extraction.

`plan_archive` reads only the central directory: it refuses hostile names, links, special files,
encryption and zip bombs, and classifies every file for the job's mode. `extract` then writes the
accepted files to names it generates itself, enforcing the size limits again on the bytes that
actually come out (headers can lie)."""

import lzma
import re
import stat
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from avlora.modes import Mode
from avlora.stage import UserError
from avlora.v1 import dataset_pb2
from services.ingest.limits import IngestLimits

CAPTION_SUFFIXES = (".txt",)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".heic", ".heif", ".avif")
ARCHIVE_SUFFIXES = (".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".rar")
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a local file header, or the end record of an empty zip
READABLE_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)
CHUNK = 1 << 20
VIDEO, CAPTION = dataset_pb2.VIDEO, dataset_pb2.CAPTION
# Every video suffix: one a mode does not take is reported as such (not as an unknown file).
ALL_VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp")


@dataclass
class Entry:
    info: zipfile.ZipInfo
    name: str                       # the path inside the archive, with "/" separators
    kind: int                       # dataset_pb2.FileKind


@dataclass
class ArchivePlan:
    entries: list[Entry] = field(default_factory=list)                  # to extract
    ignored: list[dataset_pb2.IgnoredFile] = field(default_factory=list)


def open_archive(path: Path) -> zipfile.ZipFile:
    with open(path, "rb") as handle:
        magic = handle.read(4)
    if magic not in ZIP_MAGIC:
        raise UserError("dataset archive is not a zip file")
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as error:
        raise UserError(f"dataset archive is corrupt or truncated ({error})") from None


def plan_archive(archive: zipfile.ZipFile, archive_size: int, mode: Mode, limits: IngestLimits) -> ArchivePlan:
    """Checks every entry against the limits and classifies it for `mode`, before extracting."""
    infos = archive.infolist()
    if len(infos) > limits.max_entries:
        raise UserError(f"dataset archive has {len(infos)} entries, over the limit of {limits.max_entries}")
    if sum(info.compress_size for info in infos) > archive_size:
        raise UserError("dataset archive's entries claim more compressed data than the archive holds "
                        "(overlapping entries: a zip bomb); refused")
    plan, images, total, seen = ArchivePlan(), 0, 0, {}
    for info in infos:
        name = _checked_name(info)
        if info.is_dir():
            continue
        kind, reason = _classify(name, mode)
        if reason:
            images += kind == dataset_pb2.IMAGE
            plan.ignored.append(dataset_pb2.IgnoredFile(name=name, reason=reason))
            continue
        _check_entry(info, name, limits)
        total += info.file_size
        if total > limits.max_total_bytes:
            raise UserError(f"dataset archive would extract to more than {limits.max_total_bytes} bytes "
                            "(the total limit); refused")
        base = PurePosixPath(name).name.casefold()
        if base in seen:
            raise UserError(f"file names must be unique across the archive: {seen[base]} and {name}")
        seen[base] = name
        plan.entries.append(Entry(info, name, kind))
    if not any(entry.kind == VIDEO for entry in plan.entries):
        if images:
            raise UserError("image datasets are rejected: foley requires motion over time "
                            f"(the archive holds {images} images and no videos)")
        raise UserError(f"dataset archive has no usable videos (accepted for {mode.name}: "
                        f"{' '.join(mode.video_suffixes)})")
    return plan


def extract(archive: zipfile.ZipFile, plan: ArchivePlan, out_dir: Path, limits: IngestLimits,
            on_file: Callable[[int, int], None] | None = None,
            checkpoint: Callable[[], None] | None = None) -> Iterator[tuple[Entry, Path, int]]:
    """Writes each planned entry to out_dir/<index><suffix> and yields (entry, path, size) as each
    is complete (the caller may move it away before the next one is written)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    total = 0
    for index, entry in enumerate(plan.entries):
        target = out_dir / f"{index:05d}{PurePosixPath(entry.name).suffix.lower()}"
        size = 0
        with open(target, "wb") as out:
            for chunk in _chunks(archive, entry):
                size, total = size + len(chunk), total + len(chunk)
                if size > min(entry.info.file_size, limits.max_entry_bytes) or total > limits.max_total_bytes:
                    raise UserError(f"dataset archive entry {entry.name} holds more data than its header "
                                    "says or than the limits allow (a zip bomb); refused")
                out.write(chunk)
                if checkpoint:
                    checkpoint()
        if on_file:
            on_file(index + 1, len(plan.entries))
        yield entry, target, size


def _chunks(archive: zipfile.ZipFile, entry: Entry):
    """The entry's bytes, at most its declared size (zipfile stops there and checks the CRC)."""
    try:
        with archive.open(entry.info) as source:
            while chunk := source.read(CHUNK):
                yield chunk
    except (zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError, OSError) as error:
        raise UserError(f"dataset archive is corrupt: {entry.name}: {error}") from None


def _checked_name(info: zipfile.ZipInfo) -> str:
    """The entry's name with "/" separators, or a UserError if the entry is hostile or unreadable."""
    name = info.filename.replace("\\", "/")
    if info.flag_bits & 0x1:
        raise UserError(f"dataset archive is encrypted (password-protected): {name}; upload an unencrypted zip")
    if name.startswith("/"):
        raise UserError(f"dataset archive entry {name} has an absolute path; refused")
    if re.match(r"^[A-Za-z]:", name):
        raise UserError(f"dataset archive entry {name} has a drive letter; refused")
    if ".." in name.split("/"):
        raise UserError(f"dataset archive entry {name} points outside the archive (..); refused")
    file_type = stat.S_IFMT(info.external_attr >> 16)
    if file_type == stat.S_IFLNK:
        raise UserError(f"dataset archive entry {name} is a symbolic link; refused")
    if file_type not in (0, stat.S_IFREG, stat.S_IFDIR):  # many zippers leave the type bits at zero
        raise UserError(f"dataset archive entry {name} is a special file (not a regular file); refused")
    return name


def _classify(name: str, mode: Mode) -> tuple[int, str]:
    """(kind, reason): a reason means the file is ignored."""
    parts = name.rstrip("/").split("/")
    suffix = PurePosixPath(name).suffix.lower()
    if parts[0] == "__MACOSX":
        return dataset_pb2.FILE_KIND_UNSPECIFIED, "macOS metadata (__MACOSX)"
    if any(part.startswith(".") for part in parts):
        return dataset_pb2.FILE_KIND_UNSPECIFIED, "hidden file"
    if suffix in mode.video_suffixes:
        return VIDEO, ""
    if suffix in CAPTION_SUFFIXES:
        return CAPTION, ""
    if suffix in IMAGE_SUFFIXES:
        return dataset_pb2.IMAGE, "image: not used (foley requires motion over time)"
    if suffix in ALL_VIDEO_SUFFIXES:
        return VIDEO, f"{suffix} videos are not accepted for {mode.name} (accepted: {' '.join(mode.video_suffixes)})"
    if suffix in ARCHIVE_SUFFIXES:
        return dataset_pb2.FILE_KIND_UNSPECIFIED, "nested archive: not extracted"
    return dataset_pb2.FILE_KIND_UNSPECIFIED, "not a video or a caption"


def _check_entry(info: zipfile.ZipInfo, name: str, limits: IngestLimits) -> None:
    """Refuses a file to extract that cannot be read or is too large or too compressed."""
    if info.compress_type not in READABLE_METHODS:
        raise UserError(f"dataset archive entry {name} uses an unsupported compression method "
                        f"({info.compress_type}); use deflate or store")
    if info.file_size > limits.max_entry_bytes:
        raise UserError(f"dataset archive entry {name} would extract to {info.file_size} bytes, over the "
                        f"per-file limit of {limits.max_entry_bytes} bytes; refused")
    ratio = info.file_size / max(info.compress_size, 1)
    if info.file_size > limits.ratio_floor_bytes and ratio > limits.max_ratio:
        raise UserError(f"dataset archive entry {name} compresses {ratio:.0f}:1, over the limit of "
                        f"{limits.max_ratio:g}:1 (a zip bomb); refused")
