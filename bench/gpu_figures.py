"""Every GPU figure issue 13 still needs, run one after another, each in its own process (a fresh
CUDA context and compile cache) under its own time limit. A session with a lent GPU runs this in
one or two device calls and copies the figures into the README.

    python bench/gpu_figures.py --out $OUT                  # every run, most needed first
    python bench/gpu_figures.py --out $OUT --only v2a-fp8 av2av-fp8
    python bench/gpu_figures.py --list
    python bench/gpu_figures.py --out /tmp/f --smoke --only v2a-fp8   # CPU check of the command lines

Each run's output goes to OUT/<name>.log. Its last JSON or dict line (the figures) goes to
OUT/figures.jsonl, with the run's name, exit status and seconds. Runs that time out or fail are
recorded too, and the next run starts. The runs stop when --budget-s is spent (a device call
allows 600 s).
"""

import argparse
import ast
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STEP = ["bench/trainer_step.py", "--real"]
JOB = ["bench/real_job.py"]
# name: (command, time limit in seconds), most needed first.
RUNS = {
    "av2av-default": ([*STEP, "--modes", "av2av", "--profile"], 300),
    "v2a-fp8": ([*STEP, "--modes", "v2a", "--fp8", "--profile"], 240),
    "av2av-fp8": ([*STEP, "--modes", "av2av", "--fp8"], 300),
    "av2av-worst": ([*STEP, "--modes", "av2av", "--frames", "121", "--size", "960x960"], 420),
    "job-av2av-worst": ([*JOB, "--mode", "av2av", "--frames", "121", "--resolution", "high", "--steps", "2",
                         "--sampling-steps", "2"], 600),
    "job-v2a": ([*JOB, "--mode", "v2a", "--steps", "10"], 420),
    "v2a-offload": ([*STEP, "--modes", "v2a", "--offload-activations"], 240),
    "av2av-offload": ([*STEP, "--modes", "av2av", "--offload-activations"], 300),
    "v2a-bf16-lora": ([*STEP, "--modes", "v2a", "--lora-dtype", "bf16"], 240),
    "v2a-default": ([*STEP, "--modes", "v2a", "--profile"], 240),
}
# --smoke: the same command lines on the CPU at toy sizes (later arguments win in argparse).
SMOKE = {"bench/trainer_step.py": ["--device", "cpu", "--layers", "1", "--frames", "9", "--size", "128x128",
                                   "--steps", "1"],
         "bench/real_job.py": ["--tiny", "--device", "cpu", "--frames", "9", "--resolution", "low",
                               "--validation-resolution", "low", "--steps", "2", "--sampling-steps", "2"]}


def figures_of(output: str) -> dict | None:
    """The run's last line that is a JSON object or a Python dict (trainer_step prints dicts)."""
    for line in reversed(output.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                try:
                    return ast.literal_eval(line)
                except (ValueError, SyntaxError):
                    continue
    return None


def run(name: str, command: list[str], limit_s: float, out: Path) -> dict:
    started = time.monotonic()
    with (out / f"{name}.log").open("w") as log:
        try:
            status = subprocess.run([sys.executable, *command], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                    timeout=limit_s).returncode
        except subprocess.TimeoutExpired:
            status = "timed out"
    record = {"name": name, "status": status, "seconds": round(time.monotonic() - started, 1),
              "command": " ".join(command), "figures": figures_of((out / f"{name}.log").read_text())}
    with (out / "figures.jsonl").open("a") as lines:
        lines.write(json.dumps(record) + "\n")
    return record


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--only", nargs="+", choices=sorted(RUNS), help="these runs, in the order given")
    parser.add_argument("--budget-s", type=float, default=570.0, help="start no run after this many seconds")
    parser.add_argument("--smoke", action="store_true", help="on the CPU at toy sizes: checks the command lines")
    parser.add_argument("--list", action="store_true")
    args = parser.parse_args()
    names = args.only or list(RUNS)
    if args.list:
        for name in names:
            print(f"{name:16} {RUNS[name][1]:4d} s  python {' '.join(RUNS[name][0])}")
        return 0
    if args.out is None:
        parser.error("--out is required")
    args.out.mkdir(parents=True, exist_ok=True)
    started, failed = time.monotonic(), 0
    for name in names:
        command, limit_s = RUNS[name]
        if args.smoke:
            command = command + SMOKE[command[0]]
        left = args.budget_s - (time.monotonic() - started)
        if left < 30:
            print(f"{name}: not run (the budget is spent)", flush=True)
            continue
        record = run(name, command, min(limit_s, left), args.out)
        failed += record["status"] != 0
        print(json.dumps(record), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
