"""Window rows: one row per (file, person, window) of a timeline, and their CSV and JSON-lines formats.

Row fields: path, person, window (its number k on the grid), n_windows (windows on the file's
grid: a resume knows a file is complete when each person has that many rows), t_start and t_end
(seconds from the file's first frame), label, one probability per label (the window's consensus / N), n_segments,
faceless (segments without this person's face in their own frame), silent (segments with a silent
audio window), status (ok | degraded | error), error, size_bytes, mtime_ns. JSONL rows add
`segments`: per segment of the window its grid index, frame, the frame's time, the audio window's
centre, the face box (null for a centre crop), whether its own frame had the face, and its
probabilities. A file that does not decode gets one error row: person, window, times, label and
probabilities empty.

Beside rows.py (one row per clip) because both are result rows of `score`: a window row is a clip
row's numbers for one window of one person, plus where that window lies in the file.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_emotion.preprocess.faces import Box
from edge_emotion.run.row_formats import CsvFormat, JsonlFormat
from edge_emotion.run.rows import PROB_DECIMALS, FileKey, Row
from edge_emotion.run.timeline import Timeline, WindowSpan, window_counts, window_probabilities

TIME_DECIMALS = 4


@dataclass
class ScoredSegments:
    """One person's scored segments of a timeline, in the timeline's segment order."""

    person: int
    probs: np.ndarray  # [S, K] backend output per segment
    boxes: list[Box | None]  # [S] the face box each crop used (None: centre crop)
    detected: np.ndarray  # [S] bool: the segment's own frame had this person's face
    silent: np.ndarray  # [S] bool: the segment's audio window is silent


def build_window_rows(
    key: FileKey, timeline: Timeline, scored: ScoredSegments, labels: Sequence[str], windows: Sequence[WindowSpan] | None = None
) -> list[Row]:
    """Rows of `windows` (default: all of the timeline's) for one person: consensus over each window's N segments."""
    windows = timeline.windows if windows is None else windows
    if len(scored.probs) != len(timeline.segments):
        raise ValueError(f"{len(scored.probs)} scored segments for a timeline of {len(timeline.segments)}")
    part = dataclasses.replace(timeline, windows=list(windows))
    probs = window_probabilities(scored.probs, part)  # [W, K]
    faceless = window_counts(~np.asarray(scored.detected, bool), part)  # [W]
    silent = window_counts(scored.silent, part)  # [W]
    rows = []
    for w, span in enumerate(part.windows):
        status = "degraded" if faceless[w] or silent[w] else "ok"
        rows.append({
            "path": key.path,
            "person": scored.person,
            "window": span.index,
            "n_windows": len(timeline.windows),
            "t_start": round(span.t_start, TIME_DECIMALS),
            "t_end": round(span.t_end, TIME_DECIMALS),
            "label": labels[int(np.argmax(probs[w]))],
            "probabilities": _prob_dict(probs[w], labels),
            "n_segments": timeline.n,
            "faceless": int(faceless[w]),
            "silent": int(silent[w]),
            "status": status,
            "error": "",
            "size_bytes": key.size,
            "mtime_ns": key.mtime_ns,
            "segments": [_segment(timeline, scored, p, labels) for p in range(span.first, span.first + timeline.n)],
        })
    return rows


def _segment(timeline: Timeline, scored: ScoredSegments, p: int, labels: Sequence[str]) -> Row:
    seg, box = timeline.segments[p], scored.boxes[p]
    return {
        "segment": timeline.grid_index[p],
        "frame": seg.frame,
        "time_s": round(seg.frame / timeline.fps, TIME_DECIMALS),
        "audio_centre_s": round(seg.centre, TIME_DECIMALS),
        "box": None if box is None else [round(float(v), 1) for v in box],
        "detected": bool(scored.detected[p]),
        "probabilities": _prob_dict(scored.probs[p], labels),
    }


def window_error_row(key: FileKey, error: str) -> Row:
    """The one row of a file that could not be scored."""
    return {
        "path": key.path, "person": None, "window": None, "n_windows": None, "t_start": None, "t_end": None, "label": None,
        "probabilities": None, "n_segments": 0, "faceless": 0, "silent": 0, "status": "error",
        "error": " ".join(error.split()) or "no model inputs", "size_bytes": key.size, "mtime_ns": key.mtime_ns,
        "segments": [],
    }


def _prob_dict(probs: np.ndarray, labels: Sequence[str]) -> dict[str, float]:
    return {label: round(float(p), PROB_DECIMALS) for label, p in zip(labels, probs)}


# ----------------------------------------------------------------------------- formats


def window_csv_columns(labels: Sequence[str]) -> list[str]:
    return ["path", "person", "window", "n_windows", "t_start", "t_end", "label", *labels, "n_segments", "faceless", "silent",
            "status", "error", "size_bytes", "mtime_ns"]


class WindowCsvFormat(CsvFormat):
    """Window rows as flat CSV (no segments); the clip format's writing and reading, with the window columns."""

    def __init__(self, labels: Sequence[str]) -> None:
        super().__init__(labels)
        self.columns = window_csv_columns(labels)

    def iter_read(self, text: str) -> Iterator[Row]:
        """Parse a whole file row by row (a long recording's rows are never all in memory at once)."""
        reader = csv.reader(io.StringIO(text))
        header = next(reader, None)
        if header is None:
            return
        if header != self.columns:
            raise ValueError(f"its columns {header} are not this model's {self.columns}")
        for cells in reader:
            if cells:
                yield self._decode(dict(zip(self.columns, cells)))

    def _decode(self, cells: dict[str, str]) -> Row:
        ok = cells["status"] != "error"
        return {
            "path": cells["path"],
            "person": _int_or_none(cells["person"]),
            "window": _int_or_none(cells["window"]),
            "n_windows": _int_or_none(cells["n_windows"]),
            "t_start": _float_or_none(cells["t_start"]),
            "t_end": _float_or_none(cells["t_end"]),
            "label": cells["label"] or None,
            "probabilities": {label: float(cells[label]) for label in self.labels} if ok else None,
            "n_segments": int(cells["n_segments"] or 0),
            "faceless": int(cells["faceless"] or 0),
            "silent": int(cells["silent"] or 0),
            "status": cells["status"],
            "error": cells["error"],
            "size_bytes": int(cells["size_bytes"]),
            "mtime_ns": int(cells["mtime_ns"]),
        }


def _int_or_none(cell: str) -> int | None:
    return int(cell) if cell else None


def _float_or_none(cell: str) -> float | None:
    return float(cell) if cell else None


def window_format_for(path: str | Path, labels: Sequence[str]) -> WindowCsvFormat | JsonlFormat:
    """By suffix, as row_formats.format_for: .csv, or .jsonl (.json, .ndjson) whose rows carry their segments."""
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        return WindowCsvFormat(labels)
    if suffix in (".jsonl", ".ndjson", ".json"):
        return JsonlFormat(labels)
    raise ValueError(f"{path}: the output must end in .csv or .jsonl")


def csv_labels(header: Sequence[str]) -> list[str] | None:
    """The labels of a window CSV's header (the columns between label and n_segments); None for any other header."""
    names = list(header)
    fixed = window_csv_columns([]).index("label") + 1
    if names[:fixed] != window_csv_columns([])[:fixed] or "n_segments" not in names:
        return None
    labels = names[fixed : names.index("n_segments")]
    return labels if names == window_csv_columns(labels) else None
