"""Archive checks and extraction, on real clips and on crafted hostile zips (fed in as uploads).

Every refusal must name the reason, leave nothing outside the job's ingest folder, and leave no
partly extracted files behind."""

import struct
import tempfile
import uuid
import zipfile
import zlib
from dataclasses import replace
from pathlib import Path

import pytest
from media import write_clip, zip_files

from avlora.modes import MODES
from avlora.params import AV2AVParams, V2AParams
from avlora.store import LocalStore, JobFiles
from avlora.v1 import dataset_pb2
from avlora.stage import UserError
from services.ingest import archive
from services.ingest.limits import IngestLimits
from services.ingest.stage import ingest_dataset

LIMITS = IngestLimits(max_ratio=100, ratio_floor_bytes=64 * 1024)
ZEROS = bytes(5 << 20)  # 5 MiB that deflate to ~5 KiB


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("clips")
    return {suffix: write_clip(folder / f"clip{suffix}", frames=9) for suffix in (".mp4", ".mov", ".webm")}


@pytest.fixture
def store(tmp_path) -> LocalStore:
    return LocalStore(tmp_path / "store")


def all_files(root: Path) -> set[Path]:
    return {path for path in root.rglob("*") if path.is_file()}


def ingest(store: LocalStore, zip_path: Path, mode: str = "v2a", limits: IngestLimits = LIMITS):
    """Runs ingest on `zip_path` as an upload; checks that nothing lands outside the job's folder."""
    upload_id = uuid.uuid4().hex
    store.put_file(f"uploads/{upload_id}", zip_path)
    params = (V2AParams if mode == "v2a" else AV2AVParams)(training_data_url=f"upload://{upload_id}")
    files, job_dir = JobFiles("job1"), store.root / "jobs/job1/ingest"
    before = all_files(store.root.parent)
    with tempfile.TemporaryDirectory(dir=store.root.parent) as scratch:
        try:
            return ingest_dataset(params, store, files, Path(scratch), limits=limits)
        except UserError:
            assert not store.list(files.extracted_dir), "partly extracted files were left behind"
            raise
        finally:
            new_files = all_files(store.root.parent) - before
            assert all(job_dir in path.parents or Path(scratch) in path.parents for path in new_files), new_files


def refused(store: LocalStore, zip_path: Path, mode: str = "v2a", limits: IngestLimits = LIMITS) -> str:
    with pytest.raises(UserError) as error:
        ingest(store, zip_path, mode, limits)
    return str(error.value)


HEADER_FIELDS = {"flags": (6, 8, "<H"), "method": (8, 10, "<H"), "file_size": (22, 24, "<I")}


def patch_headers(path: Path, **values: int) -> Path:
    """Rewrites fields of every local and central header (the zips patched here hold only zeros
    and text, so the signatures cannot appear inside their data)."""
    data = bytearray(path.read_bytes())
    for name, value in values.items():
        local_offset, central_offset, fmt = HEADER_FIELDS[name]
        for signature, offset in ((b"PK\x03\x04", local_offset), (b"PK\x01\x02", central_offset)):
            start = data.find(signature)
            while start != -1:
                struct.pack_into(fmt, data, start + offset, value)
                start = data.find(signature, start + 4)
    path.write_bytes(bytes(data))
    return path


def overlapping_zip(path: Path, copies: int) -> Path:
    """A zip whose central directory lists `copies` entries that all share one local entry."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = compressor.compress(bytes(1_000_000)) + compressor.flush()
    crc, first = zlib.crc32(bytes(1_000_000)), b"clip0.mp4"
    local = struct.pack("<4s5H3I2H", b"PK\x03\x04", 20, 0, 8, 0, 0, crc, len(data), 1_000_000, len(first), 0)
    central = b""
    for index in range(copies):
        name = f"clip{index}.mp4".encode()
        central += struct.pack("<4s6H3I5H2I", b"PK\x01\x02", 20, 20, 0, 8, 0, 0, crc, len(data), 1_000_000,
                               len(name), 0, 0, 0, 0, 0, 0) + name
    body = local + first + data
    end = struct.pack("<4s4H2IH", b"PK\x05\x06", 0, 0, copies, copies, len(central), len(body), 0)
    path.write_bytes(body + central + end)
    return path


def test_good_archive_is_classified_and_extracted(store, tmp_path, clips):
    zip_path = zip_files(tmp_path / "good.zip", {
        "a/clip1.mp4": clips[".mp4"], "a/clip1.txt": "footsteps on gravel", "b/clip2.mov": clips[".mov"],
        "notes.pdf": b"%PDF", "photo.jpg": b"\xff\xd8", "extra.webm": clips[".webm"], "inner.zip": b"PK",
        "__MACOSX/a/._clip1.mp4": b"junk", ".DS_Store": b"junk", "a/.hidden.mp4": b"junk"})
    manifest = ingest(store, zip_path)
    files = {item.name: item for item in manifest.files}
    assert set(files) == {"a/clip1.mp4", "a/clip1.txt", "b/clip2.mov"}
    assert files["a/clip1.txt"].kind == dataset_pb2.CAPTION and files["b/clip2.mov"].kind == dataset_pb2.VIDEO
    assert store.read_bytes(files["a/clip1.mp4"].uri) == clips[".mp4"].read_bytes()
    assert store.read_bytes(files["a/clip1.txt"].uri) == b"footsteps on gravel"
    assert files["b/clip2.mov"].size == clips[".mov"].stat().st_size
    reasons = {item.name: item.reason for item in manifest.ignored}
    assert reasons == {
        "notes.pdf": "not a video or a caption", "photo.jpg": "image: not used (foley requires motion over time)",
        "extra.webm": ".webm videos are not accepted for v2a (accepted: .mp4 .mov .avi .mkv)",
        "inner.zip": "nested archive: not extracted", "__MACOSX/a/._clip1.mp4": "macOS metadata (__MACOSX)",
        ".DS_Store": "hidden file", "a/.hidden.mp4": "hidden file"}
    assert manifest.job_id == "job1" and manifest.archive_uri.startswith("upload://")


def test_av2av_accepts_webm(store, tmp_path, clips):
    zip_path = zip_files(tmp_path / "pairs.zip", {"x_start.webm": clips[".webm"], "x_end.mp4": clips[".mp4"]})
    manifest = ingest(store, zip_path, mode="av2av")
    assert sorted(item.name for item in manifest.files) == ["x_end.mp4", "x_start.webm"]


@pytest.mark.parametrize("name, reason", [
    ("../evil.mp4", "points outside the archive (..)"), ("a/../../evil.mp4", "points outside the archive (..)"),
    ("..\\evil.mp4", "points outside the archive (..)"), ("/tmp/avlora-evil.mp4", "has an absolute path"),
    ("C:/evil.mp4", "has a drive letter")])
def test_hostile_names_are_refused(store, tmp_path, clips, name, reason):
    zip_path = zip_files(tmp_path / "hostile.zip", {"clip.mp4": clips[".mp4"], name: b"evil"})
    assert refused(store, zip_path) == f"dataset archive entry {name.replace(chr(92), '/')} {reason}; refused"
    assert not Path("/tmp/avlora-evil.mp4").exists()


def test_control_characters_in_a_refused_name_are_escaped(store, tmp_path, clips):
    """A job's error text names the file, but never carries the raw bytes of a hostile name (a
    terminal escape, CR/LF that would forge lines in a log or a CLI)."""
    name = "../evil\x1b[31m\r\nFAKE.mp4"
    zip_path = zip_files(tmp_path / "hostile.zip", {"clip.mp4": clips[".mp4"], name: b"evil"})
    assert refused(store, zip_path) == ("dataset archive entry ../evil\\x1b[31m\\x0d\\x0aFAKE.mp4 points "
                                        "outside the archive (..); refused")


@pytest.mark.parametrize("mode_bits, reason", [(0o120777, "is a symbolic link"),
                                               (0o010644, "is a special file (not a regular file)")])
def test_links_and_special_files_are_refused(store, tmp_path, clips, mode_bits, reason):
    zip_path = tmp_path / "link.zip"
    with zipfile.ZipFile(zip_path, "w") as zip_file:
        zip_file.write(clips[".mp4"], "clip.mp4")
        entry = zipfile.ZipInfo("other.mp4")
        entry.external_attr = mode_bits << 16
        zip_file.writestr(entry, "/etc/passwd")
    assert refused(store, zip_path) == f"dataset archive entry other.mp4 {reason}; refused"


def test_nested_zip_bomb_is_not_expanded(store, tmp_path, clips):
    inner = tmp_path / "inner.zip"
    with zipfile.ZipFile(inner, "w", zipfile.ZIP_DEFLATED) as zip_file:
        for index in range(4):
            zip_file.writestr(f"big{index}.mp4", ZEROS)
    zip_path = zip_files(tmp_path / "nested.zip", {"clip.mp4": clips[".mp4"], "bomb.zip": inner})
    manifest = ingest(store, zip_path)
    assert [item.name for item in manifest.files] == ["clip.mp4"]
    ignored = [(item.name, item.reason) for item in manifest.ignored]
    assert ignored == [("bomb.zip", "nested archive: not extracted")]
    extracted = all_files(store.root / JobFiles("job1").extracted_dir)
    assert sum(path.stat().st_size for path in extracted) == clips[".mp4"].stat().st_size


def test_high_ratio_bomb_is_refused_before_extraction(store, tmp_path, clips):
    zip_path = tmp_path / "ratio.zip"
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as zip_file:
        zip_file.write(clips[".mp4"], "clip.mp4")
        zip_file.writestr("big.mp4", ZEROS)
    message = refused(store, zip_path)
    assert message.startswith("dataset archive entry big.mp4 compresses ") and "(a zip bomb); refused" in message


@pytest.mark.parametrize("limits, expected", [
    (replace(LIMITS, max_entry_bytes=1000), "would extract to"),
    (replace(LIMITS, max_total_bytes=1000), "would extract to more than 1000 bytes (the total limit)"),
    (replace(LIMITS, max_entries=2), "has 3 entries, over the limit of 2")])
def test_size_and_count_limits(store, tmp_path, clips, limits, expected):
    zip_path = zip_files(tmp_path / "many.zip", {"a.mp4": clips[".mp4"], "b.mp4": clips[".mov"], "c.txt": "x"})
    assert expected in refused(store, zip_path, limits=limits)


def test_lying_headers_are_caught_while_extracting(store, tmp_path, clips):
    zip_path = tmp_path / "liar.zip"
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as zip_file:
        zip_file.writestr("big.mp4", ZEROS)
    patch_headers(zip_path, file_size=1000)  # the header claims 1000 bytes: the ratio check passes
    assert refused(store, zip_path).startswith("dataset archive is corrupt: big.mp4: Bad CRC-32")
    with archive.open_archive(zip_path) as zip_file:  # and at most the claimed size was written
        plan = archive.plan_archive(zip_file, zip_path.stat().st_size, MODES["v2a"], LIMITS)
        with pytest.raises(UserError):
            list(archive.extract(zip_file, plan, tmp_path / "out", LIMITS))
    assert [path.stat().st_size <= 1000 for path in all_files(tmp_path / "out")] == [True]


def test_overlapping_entries_are_refused(store, tmp_path):
    message = refused(store, overlapping_zip(tmp_path / "overlap.zip", copies=20))
    assert message == ("dataset archive's entries claim more compressed data than the archive holds "
                       "(overlapping entries: a zip bomb); refused")


def test_duplicate_base_names_name_both_paths(store, tmp_path, clips):
    zip_path = zip_files(tmp_path / "dup.zip", {"a/clip.mp4": clips[".mp4"], "b/clip.mp4": clips[".mov"]})
    assert refused(store, zip_path) == "file names must be unique across the archive: a/clip.mp4 and b/clip.mp4"


@pytest.mark.parametrize("files, expected", [
    ({"a.jpg": b"\xff\xd8", "b.png": b"\x89PNG", "a.txt": "caption"},
     "image datasets are rejected: foley requires motion over time (the archive holds 2 images and no videos)"),
    ({"a.txt": "caption", "readme.md": "hi", "clip.webm": b"webm"},
     "dataset archive has no usable videos (accepted for v2a: .mp4 .mov .avi .mkv)"),
    ({}, "dataset archive has no usable videos (accepted for v2a: .mp4 .mov .avi .mkv)")])
def test_archives_without_videos_fail(store, tmp_path, files, expected):
    assert refused(store, zip_files(tmp_path / "novideo.zip", files)) == expected


def test_encrypted_archive_is_refused(store, tmp_path):
    zip_path = patch_headers(zip_files(tmp_path / "secret.zip", {"clip.mp4": "not really a clip"}), flags=1)
    assert refused(store, zip_path) == ("dataset archive is encrypted (password-protected): clip.mp4; "
                                        "upload an unencrypted zip")


def test_unsupported_compression_is_refused(store, tmp_path):
    zip_path = patch_headers(zip_files(tmp_path / "d64.zip", {"clip.mp4": "data"}), method=9)
    assert refused(store, zip_path) == ("dataset archive entry clip.mp4 uses an unsupported compression "
                                        "method (9); use deflate or store")


def test_truncated_and_non_zip_files_are_refused(store, tmp_path, clips):
    good = zip_files(tmp_path / "good.zip", {"clip.mp4": clips[".mp4"]}).read_bytes()
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(good[: len(good) // 2])
    assert refused(store, truncated).startswith("dataset archive is corrupt or truncated (")
    assert refused(store, clips[".mp4"]) == "dataset archive is not a zip file"
    empty = tmp_path / "empty.zip"
    empty.write_bytes(b"")
    assert refused(store, empty) == "dataset archive is not a zip file"


def test_missing_upload_is_refused(store, tmp_path):
    params = V2AParams(training_data_url="upload://0123456789abcdef")
    with pytest.raises(UserError, match=r"^dataset: upload upload://0123456789abcdef was not found"):
        ingest_dataset(params, store, JobFiles("job1"), tmp_path / "scratch", limits=LIMITS)
