"""`avlora up` heals itself: a service SIGKILLed under a running stack comes back (the supervisor
says why), the others keep running, and the new process serves."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc

from avlora.demo_data import write_demo_dataset
from avlora.stack import Stack, Supervisor

AVLORA = [sys.executable, "-m", "avlora.cli"]


def service_pids(parent: int) -> dict[str, int]:
    """The `python -m services.X` children of a process, by service name."""
    found = {}
    for proc in Path("/proc").iterdir():
        try:
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            args = (proc / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        if ppid == parent and b"-m" in args:
            module = args[args.index(b"-m") + 1].decode()
            if module.startswith("services."):
                found[module.removeprefix("services.")] = int(proc.name)
    return found


def test_a_killed_service_is_restarted_and_serves_again(tmp_path, tiny_model_dir):
    data_dir = tmp_path / "stack"
    env = os.environ | {"AVLORA_MODEL_DIR": str(tiny_model_dir), "AVLORA_ACK_WAIT_S": "6"}
    errors = (tmp_path / "up.err").open("w+")
    up = subprocess.Popen([*AVLORA, "--data-dir", str(data_dir), "up"], env=env, stdout=subprocess.DEVNULL,
                          stderr=errors, text=True)
    try:
        deadline = time.monotonic() + 180
        while not (data_dir / "stack.json").exists():
            assert up.poll() is None and time.monotonic() < deadline, "stack did not come up"
            time.sleep(0.2)
        before = service_pids(up.pid)
        assert set(before) == {"ledger", "ingest", "preprocess", "trainer", "web"}
        os.kill(before["preprocess"], signal.SIGKILL)
        deadline = time.monotonic() + 60
        while (after := service_pids(up.pid)).get("preprocess") in (None, before["preprocess"]):
            assert up.poll() is None, "the stack stopped instead of restarting preprocess"
            assert time.monotonic() < deadline, "preprocess was not restarted"
            time.sleep(0.5)
        assert {name: after[name] for name in ("ledger", "ingest", "trainer", "web")} == \
               {name: before[name] for name in ("ledger", "ingest", "trainer", "web")}  # the others kept running
        errors.seek(0)
        said = errors.read()
        assert "preprocess killed by SIGKILL; restarting in 1 s" in said and "restarted preprocess" in said, said

        # the new preprocess process serves: once it listens, an inspection (its RPC) of a small dataset
        address = json.loads((data_dir / "stack.json").read_text())["preprocess_addr"]
        with grpc.insecure_channel(address) as channel:
            grpc.channel_ready_future(channel).result(timeout=120)
        data = write_demo_dataset("v2a", tmp_path / "demo.zip", clips=2, frames=17, size=(64, 64))
        inspected = subprocess.run([*AVLORA, "--data-dir", str(data_dir), "inspect", "v2a", str(data),
                                    "--resolution", "low", "--number-of-frames", "17"],
                                   capture_output=True, text=True, timeout=600)
        assert inspected.returncode == 0 and "dataset OK" in inspected.stdout, inspected.stdout + inspected.stderr
    finally:
        up.send_signal(signal.SIGTERM)
        assert up.wait(timeout=90) == 0


def test_a_service_that_dies_at_start_up_says_why(tmp_path):
    """The start-up error carries the end of the service's log (CI shows nothing else)."""
    from avlora.stack import free_port, wait_healthy
    log = tmp_path / "ledger.log"
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-c", "import sys; print('migration failed: disk full');"
                                    "sys.exit(3)"], stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_healthy(f"127.0.0.1:{free_port()}", 30, process, "ledger", log)
    except RuntimeError as error:
        assert "ledger exited with code 3 during start-up" in str(error)
        assert "migration failed: disk full" in str(error)
    else:
        raise AssertionError("wait_healthy returned for a process that exited")


def test_backoff_doubles_for_quick_crashes_up_to_its_cap_and_resets_once_stable(tmp_path):
    """nats-server SIGKILLed again and again under a real stack: each quick crash doubles the wait
    (up to the cap); a crash after the process stayed up STABLE_S waits the first backoff again.
    The policy's times are shortened for the test; the policy is the supervisor's own."""
    class QuickSupervisor(Supervisor):
        FIRST_BACKOFF_S, MAX_BACKOFF_S, STABLE_S = 0.2, 0.8, 3.0

    stack = Stack(tmp_path / "stack", services=("ledger",))
    stack.start()
    said: list[str] = []
    supervisor = QuickSupervisor(stack, said.append)

    def kill_and_wait_for_restart() -> None:
        process = stack.processes["nats"]
        process.send_signal(signal.SIGKILL)
        process.wait()
        deadline = time.monotonic() + 30
        while stack.processes["nats"] is process and time.monotonic() < deadline:
            supervisor.check()
            time.sleep(0.02)
        assert stack.processes["nats"] is not process, said

    try:
        for _ in range(4):
            kill_and_wait_for_restart()
        time.sleep(3.5)  # up longer than STABLE_S
        kill_and_wait_for_restart()
        waits = [float(wait) for wait in re.findall(r"^nats killed by SIGKILL; restarting in ([\d.]+) s", "\n".join(said),
                                                    re.MULTILINE)]
        assert waits == [0.2, 0.4, 0.8, 0.8, 0.2], said
        assert supervisor.restarts == 5 and stack.processes["ledger"].poll() is None  # the ledger kept running
    finally:
        stack.stop()
