"""The results file of `score --window`: many rows per file, resumable file by file, never a window twice.

The durability and the lock are ResultsFile's (one fsynced append per write, a torn last line cut
off on open, one writer at a time); what differs is what a file's rows are. A file's rows are
written window after window (timeline/score.py), and each window has a known number of rows:
one with --faces largest, max(1, people) with --faces all (its rows' `people`). So a file is done
when it has an error row, or its windows 0 .. n_windows - 1 in order, each with all its rows. A
file with fewer (a run killed while its rows were being written) is not done: its rows are dropped
and it is scored again from the start, so a resume never duplicates or misses a window. Only a small
record per file is kept in memory (where its rows stand), never the rows of an hour-long recording.

The window, hop and --faces are recorded beside the model (the `.model.json` sidecar): resuming
with others is refused, since rows of two grids or two face choices must not mix in one file.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from edge_emotion.errors import EdgeEmotionError
from edge_emotion.io.atomic import atomic_open
from edge_emotion.preprocess.people import WhichFaces
from edge_emotion.run.results_file import ResultsFile
from edge_emotion.run.rows import FileKey, Row, error_cause, row_key
from edge_emotion.timeline.rows import WindowCsvFormat, window_format_for

GRID_KEYS = ("window_s", "hop_s")


@dataclass
class FileRecord:
    """What the results file holds of one video file: its key, where its rows stand, and their counts."""

    key: FileKey
    faces: WhichFaces
    n_windows: int = 0
    window: int = -1  # the newest window with rows
    rows: int = 0  # the rows of that window so far
    people: int = 0  # people seen in that window (its rows' `people`)
    in_order: bool = True  # windows 0, 1, 2 ... so far, each with all its rows before the next
    labels: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)

    def _window_done(self) -> bool:
        return self.rows == (1 if self.faces == "largest" else max(1, self.people))

    @property
    def complete(self) -> bool:
        if self.statuses["error"]:
            return True
        return self.in_order and self.window == self.n_windows - 1 and self._window_done()

    def add(self, row: Row) -> None:
        self.statuses[row["status"]] += 1
        if row["status"] == "error":
            self.failures[error_cause(row["error"])] += 1
            return
        window = int(row["window"])
        if window == self.window:
            self.rows += 1
        else:
            self.in_order = self.in_order and window == self.window + 1 and (self.window < 0 or self._window_done())
            self.window, self.rows, self.people = window, 1, int(row["people"] or 0)
        self.n_windows = int(row["n_windows"])
        if row["label"]:
            self.labels[row["label"]] += 1


class WindowResultsFile(ResultsFile):
    """ResultsFile for window rows: `files` (path -> FileRecord) instead of one row per path."""

    def __init__(
        self, path: str | Path, labels: Sequence[str], model: dict[str, str] | None = None, faces: WhichFaces = "largest"
    ) -> None:
        self.files: dict[str, FileRecord] = {}
        super().__init__(path, labels, model, faces)

    def _load(self, model: dict[str, str] | None) -> None:
        self.format = window_format_for(self.path, self.format.labels)  # the window columns, not the clip ones
        text = self._recover()
        try:
            for row in self._rows(text):
                self._record(row)
        except (ValueError, KeyError, TypeError, json.JSONDecodeError) as exc:
            raise EdgeEmotionError(f"{self.path}: cannot resume this results file: {exc}; write to a new file") from exc
        if model is not None:
            self._check_grid(model)
            self._check_faces(resuming=bool(self.files))
            self._check_model({**model, "faces": self.faces}, resuming=bool(self.files))
        if not text:
            self._append(self.format.header())

    def _rows(self, text: str) -> Iterator[Row]:
        """The rows of the file's text, one at a time."""
        if isinstance(self.format, WindowCsvFormat):
            yield from self.format.iter_read(text)
            return
        for line in text.splitlines():
            if line.strip():
                row = json.loads(line)
                if row.get("probabilities") and list(row["probabilities"]) != self.format.labels:
                    raise ValueError(f"its labels {list(row['probabilities'])} are not this model's {self.format.labels}")
                if "window" not in row:
                    raise ValueError("its rows are one per clip (score without --window)")
                yield row

    def _record(self, row: Row) -> None:
        key = row_key(row)
        record = self.files.get(key.path)
        if record is None or record.key != key:
            record = self.files[key.path] = FileRecord(key, self.faces)
        record.add(row)

    def _check_grid(self, model: dict[str, str]) -> None:
        """Refuse to resume rows of another window or hop (the model check would call that another model)."""
        if not (self.files and self.model_path.exists()):
            return
        earlier = json.loads(self.model_path.read_text())
        if any(earlier.get(k) != model.get(k) for k in GRID_KEYS):
            raise EdgeEmotionError(
                f"{self.path}: its rows have windows of {earlier.get('window_s')} s every {earlier.get('hop_s')} s, not "
                f"{model.get('window_s')} s every {model.get('hop_s')} s; write to a new file or delete it"
            )

    def done(self, key: FileKey) -> bool:
        """Whether this version of the file has all its rows."""
        record = self.files.get(key.path)
        return record is not None and record.key == key and record.complete

    def pending(self, keys: Sequence[FileKey]) -> list[FileKey]:
        """The keys still to score, in order; rows of changed or incomplete files are dropped first."""
        self.drop(k.path for k in keys if k.path in self.files and not self.done(k))
        return [k for k in keys if not self.done(k)]

    def drop(self, paths: Iterable[str]) -> None:
        """Remove every row of these paths by rewriting the file atomically, row by row."""
        stale = set(paths) & self.files.keys()
        if not stale:
            return
        text = self._recover()
        with atomic_open(self.path) as f:
            f.write(self.format.header())
            for row in self._rows(text):
                if row["path"] not in stale:
                    f.write(self.format.encode(row))
        os.close(self._fd)
        self._fd = os.open(self.path, os.O_RDWR)
        for path in stale:
            del self.files[path]

    def write_rows(self, rows: Sequence[Row]) -> None:
        """Append rows (one file's, or a group of its windows) as a single write, then flush it to disk."""
        self._append("".join(self.format.encode(row) for row in rows))
        for row in rows:
            self._record(row)

    def write(self, row: Row) -> None:
        self.write_rows([row])

    def counts(self) -> tuple[int, dict[str, int], dict[str, int], dict[str, int]]:
        """(rows, per label, per status, failures per cause) over the whole file, as summary.count_rows gives them."""
        labels: Counter[str] = Counter()
        statuses: Counter[str] = Counter()
        failures: Counter[str] = Counter()
        for record in self.files.values():
            labels += record.labels
            statuses += record.statuses
            failures += record.failures
        return sum(statuses.values()), dict(labels.most_common()), dict(statuses), dict(failures.most_common())

    def __enter__(self) -> WindowResultsFile:
        return self
