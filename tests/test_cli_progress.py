"""The watch view's logic with a controlled clock: windowed rates, one bar per phase, complete
phases, plain lines in a log."""

import io

import pytest

from avlora.progress import JobView, RateWindow
from avlora.v1 import jobs_pb2

P, T, S = jobs_pb2.PREPROCESSING, jobs_pb2.TRAINING, jobs_pb2.SUCCEEDED


def job(state, stage="", done=0, total=0, unit="", message="", loss=0.0):
    return jobs_pb2.Job(state=state, progress=jobs_pb2.Progress(stage=stage, done=done, total=total, unit=unit,
                                                               message=message, loss=loss))


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


@pytest.fixture(autouse=True)
def terminal_width(monkeypatch):
    """A 100-column terminal, whatever runs the tests (pytest-xdist's workers see another size)."""
    monkeypatch.setenv("COLUMNS", "100")


def play(updates, tty):
    """Feeds (seconds, job) pairs; returns what the view wrote."""
    out, clock = io.StringIO(), Clock()
    view = JobView(out, tty=tty, clock=clock)
    for at, message in updates:
        clock.now = 100.0 + at
        view.update(message)
    view.close(updates[-1][1])
    return out.getvalue()


def test_rate_window_starts_after_the_first_sample_and_forgets_old_ones():
    window = RateWindow(window_s=10)
    window.add(0.0, 411_940)          # a bar that appears with work already done has no rate yet
    assert window.rate() is None
    window.add(2.0, 411_944)
    assert window.rate() == pytest.approx(2.0)
    for second in range(3, 30):       # then 10 units/s: the old pace leaves the window
        window.add(float(second), 411_944 + (second - 2) * 10)
    assert window.rate() == pytest.approx(10.0)
    window.add(30.0, window.samples[-1][1])   # stalled for a second: the window still spans 10 s
    assert window.rate() == pytest.approx(9.0, rel=0.01)


UPDATES = [
    (0, job(P, "preprocess", 0, 12, "files", "checking a.mp4")),
    *[(1 + i, job(P, "preprocess", i, 12, "files", f"checking {i}.mp4")) for i in range(1, 12)],
    (13, job(P, "preprocess", 11, 12, "files", "12 clips accepted")),   # a log line merged into the counts
    (14, job(P, "preprocess", 1, 12, "clips", "encoded a.mp4")),
    (20, job(P, "preprocess", 12, 12, "clips", "encoded l.mp4")),
    (21, job(T, "train", 10, 100, "steps", loss=0.5)),
    (31, job(T, "train", 100, 100, "steps", loss=0.25)),
    (32, job(S, "train", 100, 100, "steps", "validation loss 0.2")),
]


def test_plain_lines_name_each_phase_once_and_complete_it():
    text = play(UPDATES, tty=False)
    assert "\r" not in text and "\x1b" not in text
    assert text.splitlines() == [
        "[PREPROCESSING]",
        "preprocess files 0/12",
        "preprocess files 4/12 (0.8 files/s, 10s left)",   # every few seconds, not per update
        "preprocess files 9/12 (0.9 files/s, 3s left)",
        "[PREPROCESSING] 12 clips accepted",                  # a log line merged into the counts
        "preprocess files 12/12 in 14s",                      # the last file was checked: clips started
        "preprocess clips 1/12",                              # no rate before the count moves
        "preprocess clips 12/12 in 7s",
        "[TRAINING]",
        "train steps 10/100 (loss 0.5000)",
        "train steps 100/100 in 11s (9 steps/s, loss 0.2500)",
        "[SUCCEEDED]",
        "[SUCCEEDED] validation loss 0.2",
    ]


def test_terminal_bars_redraw_in_place_with_log_lines_above():
    text = play(UPDATES, tty=True)
    finished = [line.rsplit("\r\x1b[K", 1)[-1] for line in text.split("\n") if line]
    bars = [line for line in finished if "|" in line]
    assert bars == ["preprocess files |##############################| 12/12 (1 files/s)",
                    "preprocess clips |##############################| 12/12 (1.83 clips/s)",
                    "train steps |##############################| 100/100 (9 steps/s, loss 0.2500)"]
    assert [line for line in finished if "|" not in line] == [
        "[PREPROCESSING]", "[PREPROCESSING] 12 clips accepted", "[TRAINING]", "[SUCCEEDED]",
        "[SUCCEEDED] validation loss 0.2"]
    # While a phase runs its bar is redrawn in place, with the item being worked on.
    assert "\r\x1b[Kpreprocess files |#####.........................| 2/12 (0.667 files/s, 15s left) checking 2.mp4" in text


def test_a_failed_phase_is_left_where_it_stopped():
    text = play([(0, job(P, "preprocess", 0, 12, "files")), (1, job(P, "preprocess", 3, 12, "files")),
                 (2, job(jobs_pb2.FAILED, "preprocess", 3, 12, "files"))], tty=False)
    assert text.splitlines() == ["[PREPROCESSING]", "preprocess files 0/12", "preprocess files 3/12 in 2s", "[FAILED]"]
