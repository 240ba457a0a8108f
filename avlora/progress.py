"""What `avlora watch` shows while a job runs: one bar per phase on a terminal, plain lines in a log.

A phase is one counted step of a stage, named by the stage and the unit it counts (ingest bytes,
preprocess files, preprocess clips, train steps). Rates come from a moving window of the counts this view has seen, so
a bar that first appears with work already done shows no rate until the count moves again."""

import shutil
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TextIO

from avlora.job_state import TERMINAL, state_label
from avlora.v1 import jobs_pb2

RATE_WINDOW_S = 10.0     # rates and ETAs are measured over the last this-many seconds
PLAIN_EVERY_S = 5.0      # a plain (non-terminal) view prints a phase's count at most this often


class RateWindow:
    """Units per second over the last `window_s` seconds of (time, count) samples; None until the
    count has moved after the first sample."""

    def __init__(self, window_s: float = RATE_WINDOW_S):
        self.window_s = window_s
        self.samples: deque[tuple[float, int]] = deque()

    def add(self, now: float, done: int) -> None:
        self.samples.append((now, done))
        # Keep one sample at or before the window's start, so the window spans window_s.
        while len(self.samples) > 2 and self.samples[1][0] <= now - self.window_s:
            self.samples.popleft()

    def rate(self) -> float | None:
        if len(self.samples) < 2:
            return None
        (t0, d0), (t1, d1) = self.samples[0], self.samples[-1]
        if t1 <= t0 or d1 <= d0:
            return None
        return (d1 - d0) / (t1 - t0)


@dataclass
class Phase:
    stage: str
    unit: str
    total: int
    done: int = 0
    message: str = ""
    loss: float = 0.0
    validation_loss: float = 0.0
    started: float = 0.0
    window: RateWindow = field(default_factory=RateWindow)

    @property
    def name(self) -> str:
        return f"{self.stage} {self.unit}" if self.unit else self.stage

    def counts(self) -> str:
        if self.unit == "bytes":
            return f"{_size(self.done)}/{_size(self.total)}"
        return f"{self.done}/{self.total}"

    def speed(self) -> str:
        rate = self.window.rate()
        if rate is None:
            return ""
        per = f"{_size(rate)}/s" if self.unit == "bytes" else f"{rate:.3g} {self.unit}/s"
        left = (self.total - self.done) / rate
        return f"{per}, {_duration(left)} left" if self.done < self.total else per

    def details(self) -> str:
        parts = [self.speed()]
        if self.loss:
            parts.append(f"loss {self.loss:.4f}")
        if self.validation_loss:
            parts.append(f"val {self.validation_loss:.4f}")
        return ", ".join(part for part in parts if part)


def _size(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return ""


def _duration(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class JobView:
    """Turns the stream of Job messages of WatchJob into output. `tty` picks bars (a line redrawn
    in place) or plain lines; `clock` is injectable for tests."""

    def __init__(self, out: TextIO, tty: bool | None = None, clock=time.monotonic):
        self.out, self.clock = out, clock
        self.tty = out.isatty() if tty is None else tty
        self.phase: Phase | None = None
        self.state: int | None = None
        self.last_message = ""
        self.last_plain = float("-inf")
        self.drawn = False  # a bar line is on screen, without its newline yet

    def update(self, job: jobs_pb2.Job) -> None:
        now, progress = self.clock(), job.progress
        counted = bool(progress.total) and job.state not in TERMINAL
        if job.state in TERMINAL:
            self.close(job)
        elif counted and self.phase and (self.phase.stage, self.phase.unit) != (progress.stage, progress.unit):
            # The stage moved on to its next phase: the one before is done.
            self.phase.done, self.phase.message = self.phase.total, ""
            self._end_phase()
        if job.state != self.state:
            self.state = job.state
            self._line(f"[{state_label(job)}]")
        if counted:
            self._count(job, now)
        elif progress.message and progress.message != self.last_message:
            self._line(f"[{state_label(job)}] {progress.message}")
        self.last_message = progress.message

    def close(self, job: jobs_pb2.Job | None = None) -> None:
        """Ends the view; a phase followed by success is complete."""
        if self.phase and job is not None and job.state == jobs_pb2.SUCCEEDED:
            self.phase.done = self.phase.total
        self._end_phase()

    def _count(self, job: jobs_pb2.Job, now: float) -> None:
        phase, progress = self.phase, job.progress
        same = phase is not None and (phase.stage, phase.unit) == (progress.stage, progress.unit)
        if same and progress.done == phase.done and progress.message not in ("", self.last_message):
            # A log line arrives merged into the counts it did not move: print it as a line.
            self._line(f"[{state_label(job)}] {progress.message}")
            return
        if not same:
            phase = self.phase = Phase(progress.stage, progress.unit, progress.total, started=now)
        phase.total = progress.total
        phase.done = min(progress.done, progress.total)
        phase.message, phase.loss = progress.message, progress.loss
        phase.validation_loss = progress.validation_loss
        phase.window.add(now, phase.done)
        if self.tty:
            self._draw()
        elif not same or (now - self.last_plain >= PLAIN_EVERY_S and phase.done < phase.total):
            self.last_plain = now
            self._line(f"{phase.name} {phase.counts()}" + (f" ({phase.details()})" if phase.details() else ""))

    def _end_phase(self) -> None:
        phase, self.phase = self.phase, None
        if phase is None:
            return
        took = _duration(self.clock() - phase.started)
        if self.tty:
            self._draw(phase)
            self.out.write("\n")
            self.drawn = False
        else:
            self._line(f"{phase.name} {phase.counts()} in {took}"
                       + (f" ({phase.details()})" if phase.loss or phase.validation_loss else ""))
        self.out.flush()

    def _line(self, text: str) -> None:
        """A whole line; on a terminal it goes above the bar, which is drawn again below it."""
        if self.drawn:
            self.out.write("\r\x1b[K")
        self.out.write(text + "\n")
        self.drawn = False
        if self.tty and self.phase:
            self._draw()
        self.out.flush()

    def _draw(self, phase: Phase | None = None) -> None:
        phase = phase or self.phase
        width = shutil.get_terminal_size((100, 20)).columns
        text = f" {phase.counts()}" + (f" ({phase.details()})" if phase.details() else "")
        if phase.message:
            text += f" {phase.message}"
        bar_width = max(10, min(30, width - len(phase.name) - len(text) - 4))
        filled = int(bar_width * phase.done / phase.total) if phase.total else 0
        line = f"{phase.name} |{'#' * filled}{'.' * (bar_width - filled)}|{text}"
        self.out.write("\r\x1b[K" + line[: width - 1])
        self.drawn = True
        self.out.flush()
