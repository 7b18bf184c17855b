"""Window rows: one row per (file, person, window) of a timeline, and their CSV and JSON-lines formats.

Row fields: path, person (the face track over the whole recording: 0, 1, 2 ... in order of first
sighting; empty on a window where nobody was seen, scored on centre crops), people (people seen in the
window; 0: nobody), window (its number k on the grid), n_windows (windows on the file's grid),
t_start and t_end (seconds from the file's first frame), label, one probability per label (the
window's consensus / N), n_segments, faceless (segments without this person's own face), silent
(segments with a silent audio window), status (ok | degraded | error), error, size_bytes, mtime_ns.
Which people get a row is timeline/people.py's rule: everyone seen in the window (`--faces all`),
or its main person (`--faces largest`), and one centre-crop row where nobody was seen; so a window
has max(1, people) rows, or 1. JSONL rows add `segments`: per segment of the window its grid index,
frame, the frame's time, the audio window's centre, the face box (null for a centre crop), whether
its own frame had the face, and its probabilities. A file that does not decode gets one error row:
person, people, window, times, label and probabilities empty.

Beside rows.py (one row per clip) because both are result rows of `score`: a window row is a clip
row's numbers for one window of one person, plus where that window lies in the file.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from edge_emotion.run.consensus import clip_probabilities
from edge_emotion.run.row_formats import CsvFormat, JsonlFormat
from edge_emotion.run.rows import PROB_DECIMALS, FileKey, Row
from edge_emotion.timeline.grid import Timeline, WindowSpan
from edge_emotion.timeline.people import WindowPerson

TIME_DECIMALS = 4


def build_window_rows(
    key: FileKey, timeline: Timeline, span: WindowSpan, chosen: Sequence[WindowPerson], silent: np.ndarray, people: int,
    labels: Sequence[str],
) -> list[Row]:
    """One window's rows, one per chosen person: consensus over the window's N segments. silent: [N] bool."""
    positions = range(span.first, span.first + timeline.n)
    rows = []
    for who in chosen:
        probs = clip_probabilities(who.probs)  # [K]
        faceless, quiet = int((~np.asarray(who.detected, bool)).sum()), int(np.asarray(silent, bool).sum())
        rows.append({
            "path": key.path,
            "person": who.person,
            "people": people,
            "window": span.index,
            "n_windows": len(timeline.windows),
            "t_start": round(span.t_start, TIME_DECIMALS),
            "t_end": round(span.t_end, TIME_DECIMALS),
            "label": labels[int(np.argmax(probs))],
            "probabilities": _prob_dict(probs, labels),
            "n_segments": timeline.n,
            "faceless": faceless,
            "silent": quiet,
            "status": "degraded" if faceless or quiet else "ok",
            "error": "",
            "size_bytes": key.size,
            "mtime_ns": key.mtime_ns,
            "segments": [_segment(timeline, who, p, k, labels) for k, p in enumerate(positions)],
        })
    return rows


def _segment(timeline: Timeline, who: WindowPerson, p: int, k: int, labels: Sequence[str]) -> Row:
    seg, box = timeline.segments[p], who.boxes[k]
    return {
        "segment": timeline.grid_index[p],
        "frame": seg.frame,
        "time_s": round(seg.frame / timeline.fps, TIME_DECIMALS),
        "audio_centre_s": round(seg.centre, TIME_DECIMALS),
        "box": None if box is None else [round(float(v), 1) for v in box],
        "detected": bool(who.detected[k]),
        "probabilities": _prob_dict(who.probs[k], labels),
    }


def window_error_row(key: FileKey, error: str) -> Row:
    """The one row of a file that could not be scored."""
    return {
        "path": key.path, "person": None, "people": None, "window": None, "n_windows": None, "t_start": None, "t_end": None,
        "label": None, "probabilities": None, "n_segments": 0, "faceless": 0, "silent": 0, "status": "error",
        "error": " ".join(error.split()) or "no model inputs", "size_bytes": key.size, "mtime_ns": key.mtime_ns,
        "segments": [],
    }


def _prob_dict(probs: np.ndarray, labels: Sequence[str]) -> dict[str, float]:
    return {label: round(float(p), PROB_DECIMALS) for label, p in zip(labels, probs)}


# ----------------------------------------------------------------------------- formats


def window_csv_columns(labels: Sequence[str]) -> list[str]:
    return ["path", "person", "people", "window", "n_windows", "t_start", "t_end", "label", *labels, "n_segments", "faceless", "silent",
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
            "people": _int_or_none(cells["people"]),
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
