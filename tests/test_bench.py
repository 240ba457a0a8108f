"""The benchmarks' smoke checks run, so the scripts cannot rot between the sessions that measure
with them: bench/trainer_step.py on the tiny model, bench/gpu_figures.py running bench/real_job.py's
whole trainer-stage path (all three for the GPU), bench/control_plane.py briefly on SQLite,
bench/preprocess_memory.py's fitting of the worst legal cases."""

import ast
import re
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str) -> str:
    result = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.parametrize("switches", [[], ["--fp8"]])
def test_trainer_step_benchmark_prints_a_step_time(switches):
    lines = [line for line in _run("bench/trainer_step.py", "--device", "cpu", "--steps", "1",
                                   "--modes", "v2a", *switches).splitlines() if line.startswith("{")]
    result = ast.literal_eval(lines[-1])
    assert result["mode"] == "v2a" and result["s_per_step"] > 0 and result["tflops_per_step"] > 0
    assert result["fp8"] == ("--fp8" in switches)


def test_control_plane_benchmark_prints_its_figures():
    """SQLite only (DATABASE_URL left out), one second per figure: every figure line and the drain."""
    import os
    env = {name: value for name, value in os.environ.items() if name != "DATABASE_URL"}
    result = subprocess.run([sys.executable, "bench/control_plane.py", "--seconds", "1", "--rate", "100",
                             "--clients", "8"], cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    figures = [line.split("req/s")[0].rsplit(maxsplit=1) for line in result.stdout.splitlines() if "req/s" in line]
    assert [label.strip() for label, _ in figures] == ["CreateJob, 32 clients, 100/s offered", "CreateJob, 8 clients, capacity",
                                               "ListJobs(50), 1 clients", "ListJobs(50), 8 clients"]
    assert all(float(rate) > 0 for _, rate in figures)
    assert "jobs failed and billed by ingest" in result.stdout and "PostgreSQL" not in result.stdout


def test_fitting_the_worst_legal_cases_stays_under_the_memory_goal():
    """bench/preprocess_memory.py --no-encode: 121 frames at high, 1:1 and 16:9, and av2av with its
    reference, each in its own process (encoding them takes minutes on 2 cores: the README has
    those figures)."""
    lines = _run("bench/preprocess_memory.py", "--no-encode").splitlines()
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert set(rows) == {"v2a-high-1:1", "v2a-high-16:9", "av2av-high-1:1-reference"}, lines
    assert all(float(row[1]) < 4096 for row in rows.values()), lines


def test_gpu_figures_runs_each_measurement_in_its_own_process_and_collects_the_figures(tmp_path):
    """bench/gpu_figures.py --smoke: the command lines at toy sizes on the CPU; one of them is
    bench/real_job.py's whole trainer-stage path, for each mode."""
    _run("bench/gpu_figures.py", "--out", str(tmp_path), "--smoke", "--only", "job-av2av-worst", "job-v2a")
    records = [json.loads(line) for line in (tmp_path / "figures.jsonl").read_text().splitlines()]
    assert [(r["name"], r["status"]) for r in records] == [("job-av2av-worst", 0), ("job-v2a", 0)]
    assert [r["figures"]["mode"] for r in records] == ["av2av", "v2a"]
    job = records[0]["figures"]
    assert job["steps"] == 2 and job["size"] == [512, 512]
    assert set(job["outputs"]) == {"lora_file", "lora_comfyui_file", "config_file", "video", "video_base",
                                   "metrics_file", "spectrograms"}
    assert all(size > 0 for size in job["outputs"].values())
    assert "rendering validation previews" in (tmp_path / "job-av2av-worst.log").read_text()
    assert records[1]["figures"]["outputs"]["lora_file"] > 0


def test_audio_figures_benchmark_prints_the_share_of_preprocessing(tmp_path):
    """bench/audio_figures.py on one small clip of its own: flashes with the sound 290 ms late."""
    from tests.media import write_events_clip
    clip = write_events_clip(tmp_path / "late.mp4", [0.2, 0.45, 0.8], sound_offset=0.29, seconds=1.5)
    lines = _run("bench/audio_figures.py", str(clip), "--resolution", "low", "--aspect", "16:9",
                 "--frames", "33").splitlines()
    row = next(line for line in lines if line.startswith("late.mp4")).split()
    figures, checks, fit, encode, share = map(float, row[1:6])
    assert share == pytest.approx(figures / (checks + fit + encode), abs=0.002)
    late = re.search(r"sound (\d+) ms late", " ".join(row[6:]))
    assert late and abs(int(late.group(1)) - 290) <= 1000 / 24 and lines[-1].startswith("worst share: ")


def test_caption_cache_figures_from_the_real_configuration():
    # Gemma-3-12B: 49 hidden states x 3840 in bf16 = 376 320 B per token; LTX-2.3's projected features:
    # (4096 + 2048) x 2 = 12 288 B, under a tenth (1/30.6).
    first = json.loads(_run("bench/caption_cache.py").splitlines()[0])
    assert first["bytes_per_token_before"] == 376_320 and first["bytes_per_token_after"] == 12_288
    assert first["ratio"] <= 0.1
