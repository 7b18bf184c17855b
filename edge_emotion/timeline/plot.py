"""A picture of timelines: window rows (`score --window`) or `stream` events -> a PNG, one panel per (file, person).

A user looks at an hour instead of reading 7,000 rows: each panel shows every class's probability over
time (one line per class, at each window's middle), the winning label as a colour band under it, and
shades the windows that had segments without a face (darker: more of them). Error rows have no scores
and are left out; a file that is not results (clip rows of `score` without --window included) is
refused with one line naming it.
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
from edge_emotion.io.atomic import atomic_path
from edge_emotion.run.row_formats import csv_columns
from edge_emotion.timeline.rows import WindowCsvFormat, csv_labels

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

    Raises EdgeEmotionError naming the file when it holds no windows to plot.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise EdgeEmotionError(f"{path}: not results (not UTF-8 text)") from exc
    rows = _csv_rows(path, text) if path.suffix.lower() == ".csv" else _json_rows(path, text)
    scored = [r for r in rows if r.get("probabilities")]
    if not scored:
        raise EdgeEmotionError(f"{path}: no windows to plot ({len(rows)} rows, none with scores)")
    groups: dict[tuple[str, int | None], list[dict[str, Any]]] = {}
    for row in scored:
        person = row.get("person", 0)  # stream events from before people were tracked have no person: one person
        groups.setdefault((str(row.get("path") or path.name), None if person is None else int(person)), []).append(row)
    return [_series(name, person, group) for (name, person), group in groups.items()]


def _csv_rows(path: Path, text: str) -> list[dict[str, Any]]:
    header = next(csv.reader(io.StringIO(text)), None) or []
    labels = csv_labels(header)
    if labels is None:
        named = "label" in header and "n_segments" in header
        clip_rows = named and header == csv_columns(header[header.index("label") + 1 : header.index("n_segments")])
        raise EdgeEmotionError(f"{path}: {NO_WINDOWS if clip_rows else 'not window rows of `score --window` (unknown CSV columns)'}")
    try:
        return WindowCsvFormat(labels).read(text)
    except (ValueError, KeyError) as exc:
        raise EdgeEmotionError(f"{path}: damaged window rows ({exc})") from exc


def _json_rows(path: Path, text: str) -> list[dict[str, Any]]:
    """JSON lines of window rows or stream events; a torn last line (a killed writer) is left out."""
    lines = text.split("\n")
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            if number == len(lines):  # no newline after it: torn
                continue
            raise EdgeEmotionError(f"{path}: not results (line {number} is not JSON: {exc.msg})") from exc
        if not isinstance(row, dict) or "probabilities" not in row:
            raise EdgeEmotionError(f"{path}: not results (line {number} is not a window row or a stream event)")
        if "t_start" not in row or "t_end" not in row:
            raise EdgeEmotionError(f"{path}: {NO_WINDOWS}")
        rows.append(row)
    return rows


def _series(name: str, person: int | None, rows: list[dict[str, Any]]) -> Series:
    rows = sorted(rows, key=lambda r: float(r["t_start"]))
    labels = list(rows[0]["probabilities"])
    n = np.array([r.get("n_segments") or 0 for r in rows], float)  # stream events carry no N: any faceless counts whole
    faceless = np.array([r.get("faceless") or 0 for r in rows], float)
    return Series(
        name=name,
        person=person,
        labels=labels,
        t_start=np.array([float(r["t_start"]) for r in rows]),
        t_end=np.array([float(r["t_end"]) for r in rows]),
        probs=np.array([[float(r["probabilities"].get(k, 0.0)) for k in labels] for r in rows]),
        faceless=np.where(n > 0, faceless / np.maximum(n, 1), (faceless > 0).astype(float)),
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
    with atomic_path(output) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    plt.close(fig)


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
