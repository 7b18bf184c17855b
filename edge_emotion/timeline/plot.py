"""A picture of timelines: window rows (`score --window`) or `stream` events -> a PNG, one panel per (file, person).

A user looks at an hour instead of reading 7,000 rows: each panel shows every class's probability over
time (one line per class, at each window's middle), the winning label as a colour band under it, and
shades the windows that had segments without a face (darker: more of them). Error rows have no scores
and are left out. The file is read by the results codec (run/codec.py) and its rows' declared kind
decides: clip rows of `score` without --window, or a file that is not results, are refused with one
line naming it.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_emotion.deps import require
from edge_emotion.errors import EdgeEmotionError
from edge_emotion.io.atomic import write_png
from edge_emotion.run.codec import CsvFormat, csv_labels, from_record
from edge_emotion.run.result import Result

PANEL_WIDTH_IN = 12.0
PANEL_HEIGHT_IN = 2.4
DPI = 100
BAND = 0.12  # the label band's height, as a fraction of a panel
TICK_STEPS_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400)
NO_WINDOWS = "clip rows of `score` without --window (one row per clip, no time): score with --window to plot a timeline"


@dataclass
class Series:
    """The windows of one (file, person), in time order."""

    name: str  # the file the windows are of (the events file for stream events)
    person: int | None  # None: windows where nobody was seen (centre crops)
    labels: list[str]
    t_start: np.ndarray  # [W] seconds
    t_end: np.ndarray  # [W] seconds
    probs: np.ndarray  # [W, K]
    faceless: np.ndarray  # [W] fraction of each window's segments without a face, 0..1

    @property
    def middle(self) -> np.ndarray:
        return (self.t_start + self.t_end) / 2

    @property
    def winner(self) -> np.ndarray:
        """[W] index of each window's label."""
        return np.argmax(self.probs, axis=1)


def load_series(path: str | Path) -> list[Series]:
    """Window rows (CSV or JSONL) or stream events (JSONL) -> one Series per (file, person), in order of appearance.

    The rows are read by the results codec and their declared kind decides: windows and stream events are
    plotted, clip rows refused. Raises EdgeEmotionError naming the file when it holds no windows to plot.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise EdgeEmotionError(f"{path}: not results (not UTF-8 text)") from exc
    results = _csv_results(path, text) if path.suffix.lower() == ".csv" else _json_results(path, text)
    if any(r.kind == "clip" for r in results):
        raise EdgeEmotionError(f"{path}: {NO_WINDOWS}")
    scored = [r for r in results if r.probabilities]
    if not scored:
        raise EdgeEmotionError(f"{path}: no windows to plot ({len(results)} rows, none with scores)")
    groups: dict[tuple[str, int | None], list[Result]] = {}
    for result in scored:
        groups.setdefault((result.path or path.name, result.person), []).append(result)
    return [_series(name, person, group) for (name, person), group in groups.items()]


def _csv_results(path: Path, text: str) -> list[Result]:
    labels = csv_labels(next(csv.reader(io.StringIO(text)), []))
    if labels is None:
        raise EdgeEmotionError(f"{path}: not results (unknown CSV columns)")
    try:
        return list(CsvFormat(labels).decode(text))
    except (ValueError, KeyError, TypeError) as exc:
        raise EdgeEmotionError(f"{path}: damaged results ({exc})") from exc


def _json_results(path: Path, text: str) -> list[Result]:
    """JSON lines of window rows or stream events; a torn last line (a killed writer) is left out."""
    lines = text.split("\n")
    results = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            if number == len(lines):  # no newline after it: torn
                continue
            raise EdgeEmotionError(f"{path}: not results (line {number} is not JSON: {exc.msg})") from exc
        try:
            results.append(from_record(record))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise EdgeEmotionError(f"{path}: not results (line {number}: {exc})") from exc
    return results


def _series(name: str, person: int | None, results: list[Result]) -> Series:
    results = sorted(results, key=lambda r: r.t_start or 0.0)
    labels = list(results[0].probabilities or {})
    return Series(
        name=name,
        person=person,
        labels=labels,
        t_start=np.array([r.t_start or 0.0 for r in results]),
        t_end=np.array([r.t_end or 0.0 for r in results]),
        probs=np.array([[(r.probabilities or {}).get(k, 0.0) for k in labels] for r in results]),  # [W, K]
        faceless=np.array([r.faceless / max(r.n_segments, 1) for r in results]),
    )


def cells(series: Series) -> tuple[np.ndarray, np.ndarray]:
    """([W] left, [W] width) of each window's cell on the time axis: from halfway to the previous window's
    middle to halfway to the next one's (overlapping windows get cells one hop wide; a lone window its span)."""
    mid = series.middle
    if len(mid) == 1:
        return series.t_start.copy(), series.t_end - series.t_start
    borders = np.concatenate([[mid[0] - (mid[1] - mid[0]) / 2], (mid[1:] + mid[:-1]) / 2, [mid[-1] + (mid[-1] - mid[-2]) / 2]])
    return borders[:-1], np.diff(borders)


def clock(seconds: float, _pos: object = None) -> str:
    """Seconds -> m:ss, or h:mm:ss from an hour on."""
    total = int(round(seconds))
    hours, rest = divmod(total, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def tick_step(span_s: float, ticks: int = 10) -> float:
    """A clock-friendly distance between time ticks (1 s .. 4 h) that puts at most about `ticks` on `span_s`."""
    return float(next((step for step in TICK_STEPS_S if span_s / step <= ticks), TICK_STEPS_S[-1]))


def plot_timelines(series: list[Series], output: str | Path) -> None:
    """One panel per series (probabilities, label band, faceless shading); a PNG written atomically."""
    matplotlib = require("matplotlib")
    matplotlib.use("Agg")
    plt = require("matplotlib.pyplot")
    ticker = require("matplotlib.ticker")
    fig, axes = plt.subplots(len(series), 1, figsize=(PANEL_WIDTH_IN, PANEL_HEIGHT_IN * len(series)), dpi=DPI, squeeze=False)
    for ax, one in zip(axes[:, 0], series):
        _panel(ax, one, ticker)
    labels = series[0].labels
    handles = [plt.Line2D([], [], color=_colour(i), lw=2) for i in range(len(labels))]
    fig.legend(handles, labels, loc="upper center", ncol=len(labels), frameon=False, fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.3 / (PANEL_HEIGHT_IN * len(series))))
    write_png(fig, output, DPI)


def _colour(i: int) -> str:
    return f"C{i % 10}"


def _panel(ax: Any, series: Series, ticker: Any) -> None:
    left, width = cells(series)
    shaded = series.faceless > 0
    if shaded.any():  # one collection for all shaded windows, darker with more faceless segments
        alpha = 0.12 + 0.3 * series.faceless[shaded]
        ax.broken_barh(list(zip(left[shaded], width[shaded])), (0, 1), facecolors=[(0.3, 0.3, 0.3, a) for a in alpha], lw=0)
    for i in range(len(series.labels)):
        ax.plot(series.middle, series.probs[:, i], color=_colour(i), lw=1.2)
    band = [_colour(int(i)) for i in series.winner]
    ax.broken_barh(list(zip(left, width)), (-BAND - 0.02, BAND), facecolors=band, lw=0)
    ax.set_ylim(-BAND - 0.04, 1.02)
    ax.set_xlim(float(left[0]), float(left[-1] + width[-1]))
    ax.set_yticks([0, 0.5, 1])
    ax.set_ylabel("probability")
    ax.xaxis.set_major_locator(ticker.MultipleLocator(tick_step(float(left[-1] + width[-1] - left[0]))))
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(clock))
    who = "nobody in view (centre crops)" if series.person is None else f"person {series.person}"
    ax.set_title(f"{Path(series.name).name}: {who}, {len(series.middle)} windows", fontsize=9, loc="left")
    ax.grid(alpha=0.25)
