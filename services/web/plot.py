"""The loss curve as server-side SVG geometry: training and validation loss against steps, with the
untrained baseline; the template (templates/_plot.html) draws it."""

import math
from dataclasses import dataclass, field

from avlora.v1 import jobs_pb2

WIDTH, HEIGHT = 640, 300
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 16, 40   # margins for the axes' labels


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values from at or below `low` to at or above `high` (steps of 1, 2 or 5 times a
    power of ten, about `count` of them)."""
    if high <= low:
        high = low + 1
    raw = (high - low) / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first, last = math.floor(low / step + 1e-9), math.ceil(high / step - 1e-9)
    return [round(index * step, 10) for index in range(first, last + 1)]


def _label(value: float) -> str:
    return f"{value:g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.1e}"


@dataclass
class Plot:
    train: str = ""                 # SVG polyline points
    validation: str = ""
    baseline_y: float | None = None
    baseline: float = 0.0
    x_ticks: list[tuple[float, str]] = field(default_factory=list)
    y_ticks: list[tuple[float, str]] = field(default_factory=list)
    last_loss: float = 0.0
    last_validation: float = 0.0
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    right: int = WIDTH - RIGHT
    top: int = TOP
    bottom: int = HEIGHT - BOTTOM


def loss_plot(points: list[jobs_pb2.ProgressPoint]) -> Plot | None:
    """The plot of a job's training steps; None before the first step with a loss."""
    steps = [p for p in points if p.stage == "train" and p.unit == "steps" and p.loss]
    if not steps:
        return None
    train = [(p.done, p.loss) for p in steps]
    validation: list[tuple[int, float]] = []
    for p in steps:  # the value holds between evaluations: a point where it changes, and the last
        if p.validation_loss and (not validation or validation[-1][1] != p.validation_loss or p is steps[-1]):
            validation.append((p.done, p.validation_loss))
    baseline = next((p.baseline_validation_loss for p in steps if p.baseline_validation_loss), 0.0)
    if baseline:
        validation.insert(0, (0, baseline))  # the untrained model at step 0
    values = [v for _, v in train + validation] + ([baseline] if baseline else [])
    low, high = min(values), max(values)
    pad = (high - low) * 0.05 or abs(high) * 0.1 or 1.0
    y_ticks = nice_ticks(max(0.0, low - pad), high + pad)
    y_low, y_high = y_ticks[0], y_ticks[-1]
    x_high = max(steps[-1].total, 1)
    x_ticks = nice_ticks(0, x_high)
    plot = Plot(baseline=baseline, last_loss=train[-1][1], last_validation=validation[-1][1] if validation else 0.0)

    def x(step: float) -> float:
        return round(plot.left + (plot.right - plot.left) * step / x_high, 1)

    def y(value: float) -> float:
        return round(plot.bottom - (plot.bottom - plot.top) * (value - y_low) / ((y_high - y_low) or 1), 1)

    plot.train = " ".join(f"{x(s)},{y(v)}" for s, v in train)
    plot.validation = " ".join(f"{x(s)},{y(v)}" for s, v in validation)
    plot.baseline_y = y(baseline) if baseline else None
    plot.x_ticks = [(x(t), _label(t)) for t in x_ticks if t <= x_high]
    plot.y_ticks = [(y(t), _label(t)) for t in y_ticks]
    return plot
