"""How rows are written and read back: CSV (flat, a header line) or JSON lines (with the per-segment timeline).

One module for both so the results file chooses by the output's suffix alone
(`format_for`); each format can read back exactly what it wrote, which a resume needs.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path

from edge_emotion.run.rows import Row

PERSON_COLUMNS = ("person", "people")  # since one row per person (--faces): files written before have neither


def csv_columns(labels: Sequence[str]) -> list[str]:
    return ["path", *PERSON_COLUMNS, "label", *labels, "n_segments", "faceless", "silent", "duration_s", "status", "error",
            "size_bytes", "mtime_ns"]


class CsvFormat:
    """Flat rows, a header line first; empty cells where an error row has no value."""

    suffix = ".csv"

    def __init__(self, labels: Sequence[str]) -> None:
        self.labels = list(labels)
        self.columns = csv_columns(labels)

    def header(self) -> str:
        return self._line(self.columns)

    def encode(self, row: Row) -> str:
        probs = row["probabilities"] or {}
        cells = {k: row.get(k) for k in self.columns if k not in self.labels}
        cells.update({label: probs.get(label) for label in self.labels})
        return self._line(["" if cells[c] is None else str(cells[c]) for c in self.columns])

    @staticmethod
    def _line(cells: Sequence[str]) -> str:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerow(cells)
        return buffer.getvalue()

    def read(self, text: str) -> list[Row]:
        """Parse a whole file (header included); refuse one written with other columns."""
        reader = csv.reader(io.StringIO(text))
        header = next(reader, None)
        if header is None:
            return []
        if header == [c for c in self.columns if c not in PERSON_COLUMNS]:
            raise ValueError("it has no person column: it was written by an older edge-emotion, one row per clip")
        if header != self.columns:
            raise ValueError(f"its columns {header} are not this model's {self.columns}")
        return [self._decode(dict(zip(self.columns, cells))) for cells in reader if cells]

    def _decode(self, cells: dict[str, str]) -> Row:
        ok = cells["status"] != "error"
        return {
            "path": cells["path"],
            "person": int(cells["person"]) if cells["person"] else None,
            "people": int(cells["people"]) if cells["people"] else None,
            "label": cells["label"] or None,
            "probabilities": {label: float(cells[label]) for label in self.labels} if ok else None,
            "n_segments": int(cells["n_segments"] or 0),
            "faceless": int(cells["faceless"] or 0),
            "silent": int(cells["silent"] or 0),
            "duration_s": float(cells["duration_s"]) if cells["duration_s"] else None,
            "status": cells["status"],
            "error": cells["error"],
            "size_bytes": int(cells["size_bytes"]),
            "mtime_ns": int(cells["mtime_ns"]),
        }


class JsonlFormat:
    """One JSON object per line, with the per-segment timeline."""

    suffix = ".jsonl"

    def __init__(self, labels: Sequence[str]) -> None:
        self.labels = list(labels)

    def header(self) -> str:
        return ""

    def encode(self, row: Row) -> str:
        return json.dumps(row, ensure_ascii=False) + "\n"

    def read(self, text: str) -> list[Row]:
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        for row in rows:
            if row.get("probabilities") and list(row["probabilities"]) != self.labels:
                raise ValueError(f"its labels {list(row['probabilities'])} are not this model's {self.labels}")
        return rows


def format_for(path: str | Path, labels: Sequence[str]) -> CsvFormat | JsonlFormat:
    """By suffix: .csv or .jsonl (also .json / .ndjson, written as JSON lines)."""
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        return CsvFormat(labels)
    if suffix in (".jsonl", ".ndjson", ".json"):
        return JsonlFormat(labels)
    raise ValueError(f"{path}: the output must end in .csv or .jsonl")
