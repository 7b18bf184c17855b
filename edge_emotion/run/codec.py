"""The one codec of results: a `Result` <-> a JSON object (JSON lines, with segments) or a CSV line (flat).

Every writer (the resumable results file, stream events, a new format) encodes through here and every
reader decodes through here, so clip rows, window rows and stream events have one set of field names and
read back exactly what was written (CSV leaves out the segments and the live fields). A format is
anything with `suffix`, `header()`, `encode(result)` and `decode(text)`; `FORMATS` maps suffixes to them,
so a new format (WebVTT, ELAN) is one small module and one entry here.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any, Protocol

from edge_emotion.run.result import KINDS, Live, Result, SegmentResult

FIELDS = tuple(f.name for f in fields(Result) if f.name != "live")  # a JSON line's keys, in order
LIVE_FIELDS = tuple(f.name for f in fields(Live))  # after them, on a live source's results only
_INTS = ("person", "people", "window", "n_windows", "n_segments", "faceless", "silent", "videoless", "size_bytes", "mtime_ns")
_FLOATS = ("t_start", "t_end", "duration_s")


def to_record(result: Result) -> dict[str, Any]:
    """The JSON object of a result (a live source's adds LIVE_FIELDS)."""
    record = {name: getattr(result, name) for name in FIELDS}
    record["segments"] = [{**vars(s), "box": None if s.box is None else list(s.box)} for s in result.segments]
    if result.live is not None:
        record.update(vars(result.live))
    return record


def from_record(record: dict[str, Any], labels: Sequence[str] | None = None) -> Result:
    """A JSON object back to its result; ValueError for another kind of object, or other labels than `labels`."""
    if "people" not in record:
        raise ValueError("its rows have no person field: written by an older edge-emotion")
    missing = [name for name in FIELDS if name not in record]
    if missing or record["kind"] not in KINDS:
        raise ValueError(f"not results (no {', '.join(missing) or 'known kind'})")
    probs = record["probabilities"]
    if labels is not None and probs and list(probs) != list(labels):
        raise ValueError(f"its labels {list(probs)} are not this model's {list(labels)}")
    segments = tuple(SegmentResult(**{**s, "box": None if s["box"] is None else tuple(s["box"])}) for s in record["segments"])
    live = Live(**{name: record[name] for name in LIVE_FIELDS}) if all(name in record for name in LIVE_FIELDS) else None
    return Result(**{name: record[name] for name in FIELDS if name != "segments"}, segments=segments, live=live)


def json_line(result: Result) -> str:
    """A result as one line of JSON (newline included): what JSONL results files and stream events hold."""
    return json.dumps(to_record(result), ensure_ascii=False) + "\n"


class Format(Protocol):
    """How results are written to (and read back from) one kind of file."""

    suffix: str

    def header(self) -> str: ...

    def encode(self, result: Result) -> str: ...

    def decode(self, text: str) -> Iterator[Result]: ...


class JsonlFormat:
    """One JSON object per line, segments included."""

    suffix = ".jsonl"

    def __init__(self, labels: Sequence[str]) -> None:
        self.labels = list(labels)

    def header(self) -> str:
        return ""

    def encode(self, result: Result) -> str:
        return json_line(result)

    def decode(self, text: str) -> Iterator[Result]:
        for line in text.splitlines():
            if line.strip():
                yield from_record(json.loads(line), self.labels)


def csv_columns(labels: Sequence[str]) -> list[str]:
    """The CSV header: the fields without segments, one probability column per label in place of probabilities."""
    at = FIELDS.index("probabilities")
    return [*FIELDS[:at], *labels, *FIELDS[at + 1 : FIELDS.index("segments")]]


def csv_labels(header: Sequence[str]) -> list[str] | None:
    """The labels of a results CSV's header (the columns between label and n_segments); None for any other header."""
    names = list(header)
    if "label" not in names or "n_segments" not in names:
        return None
    labels = names[names.index("label") + 1 : names.index("n_segments")]
    return labels if names == csv_columns(labels) else None


class CsvFormat:
    """Flat rows, a header line first; empty cells for null values."""

    suffix = ".csv"

    def __init__(self, labels: Sequence[str]) -> None:
        self.labels = list(labels)
        self.columns = csv_columns(labels)

    def header(self) -> str:
        return _line(self.columns)

    def encode(self, result: Result) -> str:
        probs = result.probabilities or {}
        cells = [probs.get(c) if c in self.labels else getattr(result, c) for c in self.columns]
        return _line(["" if v is None else str(v) for v in cells])

    def decode(self, text: str) -> Iterator[Result]:
        """Row by row (a long recording's rows are never all in memory); refuse a file of other columns."""
        reader = csv.reader(io.StringIO(text))
        header = next(reader, None)
        if header is None:
            return
        if "person" not in header and {"path", "label", "status"} <= set(header):
            raise ValueError("it has no person column: it was written by an older edge-emotion, one row per clip")
        if header != self.columns:
            raise ValueError(f"its columns {header} are not this model's {self.columns}")
        for cells in reader:
            if cells:
                yield self._result(dict(zip(self.columns, cells)))

    def _result(self, cells: dict[str, str]) -> Result:
        values: dict[str, Any] = {name: cells[name] for name in FIELDS if name in cells}
        for name in _INTS:
            values[name] = _cell(cells[name], int)
        for name in _FLOATS:
            values[name] = _cell(cells[name], float)
        values["label"] = cells["label"] or None
        scored = cells["status"] != "error"
        values["probabilities"] = {label: float(cells[label]) for label in self.labels} if scored else None
        if values["kind"] not in KINDS:
            raise ValueError(f"not results (kind {values['kind']!r})")
        return Result(**values)


def _cell(text: str, kind: Callable[[str], Any]) -> Any:
    return kind(text) if text else None


def _line(cells: Sequence[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(cells)
    return buffer.getvalue()


FORMATS: dict[str, Callable[[Sequence[str]], Format]] = {
    ".csv": CsvFormat, ".jsonl": JsonlFormat, ".ndjson": JsonlFormat, ".json": JsonlFormat,
}


def format_for(path: str | Path, labels: Sequence[str]) -> Format:
    """By suffix: .csv or .jsonl (also .json / .ndjson, written as JSON lines)."""
    make = FORMATS.get(Path(path).suffix.lower())
    if make is None:
        raise ValueError(f"{path}: the output must end in .csv or .jsonl")
    return make(labels)
