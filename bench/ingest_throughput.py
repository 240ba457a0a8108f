"""Ingest throughput: download + safe extraction of a zip of clips over loopback HTTP, beside the
`unzip` program extracting the same archive from disk.

    .venv/bin/python bench/ingest_throughput.py [--megabytes 300] [--clips 30]

The clips are random bytes named .mp4 (as incompressible as encoded video; ingest never decodes
them), zipped with deflate like common zip tools. Both sides read a warm page cache."""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from avlora.params import V2AParams  # noqa: E402
from avlora.store import JobFiles, LocalStore  # noqa: E402
from services.ingest.limits import IngestLimits  # noqa: E402
from services.ingest.stage import ingest_dataset  # noqa: E402


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def make_archive(folder: Path, megabytes: int, clips: int) -> Path:
    zip_path = folder / "clips.zip"
    clip_bytes = megabytes * (1 << 20) // clips
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as archive:
        for index in range(clips):
            archive.writestr(f"clips/clip{index:03d}.mp4", os.urandom(clip_bytes))
            archive.writestr(f"clips/clip{index:03d}.txt", f"caption {index}")
    return zip_path


def timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=300)
    parser.add_argument("--clips", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="avlora-bench-") as temp:
        folder = Path(temp)
        zip_path = make_archive(folder, args.megabytes, args.clips)
        size_mb = zip_path.stat().st_size / 1e6
        server = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(folder)))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}/clips.zip"
        store = LocalStore(folder / "store")
        limits = IngestLimits(allow_networks="127.0.0.0/8")
        params = V2AParams(training_data_url=url)
        ingest_s = timed(lambda: ingest_dataset(params, store, JobFiles("bench"), folder / "scratch", limits=limits))
        server.shutdown()
        print(f"archive: {size_mb:.0f} MB, {args.clips} clips + captions (deflate)")
        print(f"avlora ingest (download over loopback + checks + extraction): {ingest_s:.2f} s, "
              f"{size_mb / ingest_s:.0f} MB/s")
        unzip = shutil.which("unzip")
        if unzip is None:
            print("unzip is NOT installed (apt-get install unzip): no comparison")
            return
        out = folder / "unzipped"
        unzip_s = timed(lambda: subprocess.run([unzip, "-q", "-o", str(zip_path), "-d", str(out)], check=True))
        print(f"unzip (extraction from local disk only): {unzip_s:.2f} s, {size_mb / unzip_s:.0f} MB/s")
        print(f"ratio avlora / unzip throughput: {unzip_s / ingest_s:.2f}")


if __name__ == "__main__":
    main()
